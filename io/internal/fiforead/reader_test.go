package fiforead

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestOpenRefusesWhatIsNoFIFO(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(file); err == nil {
		t.Fatal("Open of a regular file succeeded")
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if IsFIFO(f) == nil {
		t.Fatal("IsFIFO of a regular file")
	}
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := Open(fifo)
	if err != nil {
		t.Fatalf("Open of a FIFO: %v", err)
	}
	defer r.Close()
	if err := IsFIFO(r.f); err != nil {
		t.Fatal(err)
	}
}
