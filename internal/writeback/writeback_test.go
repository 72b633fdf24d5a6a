package writeback

import (
	"os"
	"path/filepath"
	"testing"
)

// TestAhead writes a file in pieces and checks which ranges have had
// their writeback started: whole chunks only, a truncation starting over.
func TestAhead(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	piece := make([]byte, Chunk/4)
	var a Ahead
	var end int64
	write := func() {
		t.Helper()
		n, err := f.Write(piece)
		if err != nil {
			t.Fatal(err)
		}
		end += int64(n)
		a.Wrote(fd, end)
	}
	for range 3 {
		write()
	}
	if a.started != 0 {
		t.Fatalf("started at %d after %d bytes, less than a chunk", a.started, end)
	}
	write()
	if a.started != Chunk {
		t.Fatalf("started up to %d after %d bytes, want %d", a.started, end, Chunk)
	}
	if err := f.Truncate(Chunk / 2); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(Chunk/2, 0); err != nil {
		t.Fatal(err)
	}
	end = Chunk / 2
	a.Wrote(fd, end)
	if a.started != Chunk/2 {
		t.Fatalf("started up to %d after a truncation to %d", a.started, end)
	}
	for range 4 {
		write()
	}
	if want := int64(Chunk/2 + Chunk); a.started != want {
		t.Fatalf("started up to %d at %d, want %d", a.started, end, want)
	}
}
