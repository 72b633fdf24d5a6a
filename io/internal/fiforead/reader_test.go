package fiforead

import (
	"io"
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

// TestReadWhatCameWithTheEnd: bytes that reach the FIFO between a read
// that finds nothing and Read's look at whether that is the end (the
// writers gone, or Cancel) are read, not lost to an EOF. berthctl lost
// the output of a short-lived container this way now and then (client's
// TestTaskLifecycle failed 2-3 times in 600 runs).
func TestReadWhatCameWithTheEnd(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cancel bool // the writer stays; Cancel comes
	}{{"writer came and left", false}, {"cancelled", true}} {
		t.Run(tc.name, func(t *testing.T) {
			fifo := filepath.Join(t.TempDir(), "fifo")
			if err := unix.Mkfifo(fifo, 0o600); err != nil {
				t.Fatal(err)
			}
			r, err := Open(fifo)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			var w *os.File
			defer func() {
				if w != nil {
					w.Close()
				}
			}()
			wrote := false
			afterEmptyRead = func() {
				if wrote {
					return
				}
				wrote = true
				if w, err = os.OpenFile(fifo, os.O_WRONLY|unix.O_NONBLOCK, 0); err != nil {
					t.Errorf("open the writer: %v", err)
					return
				}
				if _, err := w.WriteString("hello"); err != nil {
					t.Errorf("write: %v", err)
				}
				if tc.cancel {
					r.Cancel()
				} else {
					w.Close()
					w = nil
				}
			}
			defer func() { afterEmptyRead = nil }()
			buf := make([]byte, 16)
			n, err := r.Read(buf)
			if !wrote {
				t.Fatal("the first read was not empty")
			}
			if got := string(buf[:n]); got != "hello" || err != nil {
				t.Fatalf("Read = %q, %v; want \"hello\", nil", got, err)
			}
			if n, err := r.Read(buf); n != 0 || err != io.EOF {
				t.Fatalf("second Read = %d, %v; want 0, EOF", n, err)
			}
		})
	}
}
