package cio

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/testutil"
)

// shimWriter opens path for writing the way the shim does: non-blocking,
// failing when no reader is present.
func shimWriter(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatalf("open %s for writing like the shim: %v", path, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func write(t *testing.T, f *os.File, s string) {
	t.Helper()
	if _, err := f.WriteString(s); err != nil {
		t.Fatalf("write %s: %v", f.Name(), err)
	}
}

// waitDone runs pio.Wait and reports whether it returned within d.
func waitDone(pio IO, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		pio.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

func mustWait(t *testing.T, pio IO) {
	t.Helper()
	if !waitDone(pio, 30*time.Second) {
		t.Fatal("Wait did not return")
	}
}

func TestNewFIFOSetInDir(t *testing.T) {
	for _, terminal := range []bool{false, true} {
		root := filepath.Join(t.TempDir(), "fifo")
		set, err := NewFIFOSetInDir(root, "redis-1", terminal)
		if err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(root)
		if err != nil || st.Mode().Perm() != 0o700 {
			t.Fatalf("fifo dir: %v, mode %v; want 0700", err, st.Mode())
		}
		dir := filepath.Dir(set.Stdin)
		if filepath.Dir(dir) != root || !strings.HasPrefix(filepath.Base(dir), "redis-1-") {
			t.Errorf("per-process folder %s, want redis-1-* under %s", dir, root)
		}
		paths := []string{set.Stdin, set.Stdout}
		if terminal {
			if set.Stderr != "" {
				t.Errorf("terminal set has stderr %q", set.Stderr)
			}
		} else {
			paths = append(paths, set.Stderr)
		}
		for _, p := range paths {
			st, err := os.Lstat(p)
			if err != nil || st.Mode()&fs.ModeNamedPipe == 0 {
				t.Errorf("%s: %v, mode %v; want a FIFO", p, err, st.Mode())
			}
		}
		if set.Terminal != terminal {
			t.Errorf("Terminal = %v, want %v", set.Terminal, terminal)
		}
		if err := set.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("folder still there after Close: %v", err)
		}
		if err := set.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	}
}

func TestNewFIFOSetInDirBadID(t *testing.T) {
	if _, err := NewFIFOSetInDir(t.TempDir(), "../x", false); err == nil {
		t.Fatal("an id with a path separator was accepted")
	}
}

func TestCreatorCopies(t *testing.T) {
	var stdout, stderr testutil.Buffer
	pio, err := NewCreator(WithFIFODir(t.TempDir()),
		WithStreams(strings.NewReader("input\n"), &stdout, &stderr))("c1")
	if err != nil {
		t.Fatal(err)
	}
	cfg := pio.Config()
	if cfg.Stdin == "" || cfg.Stdout == "" || cfg.Stderr == "" || cfg.Terminal {
		t.Fatalf("Config = %+v", cfg)
	}

	// The readers are there before the "shim" opens: its non-blocking
	// opens succeed.
	out := shimWriter(t, cfg.Stdout)
	errw := shimWriter(t, cfg.Stderr)
	write(t, out, "hello ")
	write(t, errw, "oops")
	write(t, out, "world")
	out.Close()
	errw.Close()

	in, err := os.OpenFile(cfg.Stdin, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(in) // EOF: the copier closed stdin at the reader's end
	in.Close()
	if err != nil || string(got) != "input\n" {
		t.Errorf("stdin = %q, %v", got, err)
	}

	mustWait(t, pio)
	if stdout.String() != "hello world" || stderr.String() != "oops" {
		t.Errorf("stdout %q stderr %q", stdout.String(), stderr.String())
	}
	dir := filepath.Dir(cfg.Stdout)
	if err := pio.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("fifo folder left after Close: %v", err)
	}
	if err := pio.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestCreatorOnlyWhatIsAsked(t *testing.T) {
	var stdout testutil.Buffer
	pio, err := NewCreator(WithFIFODir(t.TempDir()), WithStreams(nil, &stdout, &stdout), WithTerminal)("c1")
	if err != nil {
		t.Fatal(err)
	}
	defer pio.Close()
	cfg := pio.Config()
	if cfg.Stdin != "" || cfg.Stdout == "" || cfg.Stderr != "" || !cfg.Terminal {
		t.Fatalf("Config = %+v, want stdout only, with a terminal", cfg)
	}
}

// TestCreatorNoStreamsNoFolder: without streams the daemon gets no path,
// so a folder made anyway would outlive a crashed client with nothing
// pointing at it (found by the fault-injection run, integration/chaos_test.go).
func TestCreatorNoStreamsNoFolder(t *testing.T) {
	dir := t.TempDir()
	pio, err := NewCreator(WithFIFODir(dir), WithStreams(nil, nil, nil))("c1")
	if err != nil {
		t.Fatal(err)
	}
	if cfg := pio.Config(); cfg.Stdin != "" || cfg.Stdout != "" || cfg.Stderr != "" {
		t.Errorf("Config = %+v, want no paths", cfg)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("FIFO dir holds %v, want nothing", entries)
	}
	if err := pio.Close(); err != nil {
		t.Error(err)
	}
}

func TestWaitForTheWriter(t *testing.T) {
	tests := []struct {
		name  string
		shim  func(t *testing.T, path string)
		wantO string
	}{
		{"writes and leaves", func(t *testing.T, p string) {
			w := shimWriter(t, p)
			write(t, w, "late")
			w.Close()
		}, "late"},
		{"leaves without writing", func(t *testing.T, p string) {
			shimWriter(t, p).Close()
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout testutil.Buffer
			pio, err := NewCreator(WithFIFODir(t.TempDir()), WithStreams(nil, &stdout, nil))("c1")
			if err != nil {
				t.Fatal(err)
			}
			defer pio.Close()
			// No writer has come yet: that is not the end of output.
			if waitDone(pio, 100*time.Millisecond) {
				t.Fatal("Wait returned before any writer came")
			}
			tt.shim(t, pio.Config().Stdout)
			mustWait(t, pio)
			if stdout.String() != tt.wantO {
				t.Errorf("stdout = %q, want %q", stdout.String(), tt.wantO)
			}
		})
	}
}

func TestCancel(t *testing.T) {
	t.Run("no writer", func(t *testing.T) {
		var stdout testutil.Buffer
		pio, err := NewCreator(WithFIFODir(t.TempDir()), WithStreams(strings.NewReader("x"), &stdout, &stdout))("c1")
		if err != nil {
			t.Fatal(err)
		}
		pio.Cancel()
		mustWait(t, pio)
		if err := pio.Close(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("drains what the FIFO holds", func(t *testing.T) {
		var stdout testutil.Buffer
		pio, err := NewCreator(WithFIFODir(t.TempDir()), WithStreams(nil, &stdout, nil))("c1")
		if err != nil {
			t.Fatal(err)
		}
		defer pio.Close()
		w := shimWriter(t, pio.Config().Stdout) // stays open
		write(t, w, "buffered")
		pio.Cancel()
		mustWait(t, pio)
		if stdout.String() != "buffered" {
			t.Errorf("stdout = %q, want what was buffered", stdout.String())
		}
	})
}

// TestAttach: a second reader attaches to FIFOs whose writer (the shim) is
// still connected, as after a client restart.
func TestAttach(t *testing.T) {
	set, err := NewFIFOSetInDir(t.TempDir(), "c1", false)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	var first testutil.Buffer
	pio, err := NewAttach(WithStreams(nil, &first, nil))(NewFIFOSet(set.Config, nil))
	if err != nil {
		t.Fatal(err)
	}
	w := shimWriter(t, set.Stdout)
	write(t, w, "one")
	pio.Cancel()
	mustWait(t, pio)
	if err := pio.Close(); err != nil {
		t.Fatal(err)
	}
	if first.String() != "one" {
		t.Fatalf("first attach got %q", first.String())
	}
	if _, err := os.Stat(set.Stdout); err != nil {
		t.Fatalf("closing an attach with a set without close removed the FIFO: %v", err)
	}

	var second testutil.Buffer
	pio, err = NewAttach(WithStreams(nil, &second, nil))(LoadFIFOs(set.Config))
	if err != nil {
		t.Fatal(err)
	}
	write(t, w, "two")
	if waitDone(pio, 100*time.Millisecond) {
		t.Fatal("Wait returned while the writer is connected")
	}
	w.Close()
	mustWait(t, pio)
	if second.String() != "two" {
		t.Errorf("second attach got %q", second.String())
	}
	if err := pio.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{set.Stdin, set.Stdout, set.Stderr, filepath.Dir(set.Stdout)} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left after closing a loaded set: %v", p, err)
		}
	}
}

func TestAttachErrors(t *testing.T) {
	if _, err := NewAttach(WithStreams(nil, io.Discard, nil))(nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("nil set: %v", err)
	}
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(dir, "missing"), plain} {
		if _, err := NewAttach(WithStreams(nil, io.Discard, nil))(NewFIFOSet(Config{Stdout: p}, nil)); err == nil {
			t.Errorf("attach to %s succeeded", p)
		}
	}
	// A file output is the shim's business: nothing to attach to.
	pio, err := NewAttach(WithStreams(nil, io.Discard, io.Discard))(NewFIFOSet(Config{Stdout: "file://" + plain}, nil))
	if err != nil {
		t.Fatal(err)
	}
	mustWait(t, pio)
	pio.Close()
}

func TestLoadFIFOsLeavesOtherFiles(t *testing.T) {
	set, err := NewFIFOSetInDir(t.TempDir(), "c1", true)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(set.Stdout)
	other := filepath.Join(dir, "keep")
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := set.Config
	cfg.Stderr = other // not a FIFO: never removed
	if err := LoadFIFOs(cfg).Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(set.Stdout); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stdout FIFO left: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("a regular file was removed: %v", err)
	}
}

func TestNullIOAndLogFile(t *testing.T) {
	pio, err := NullIO("c1")
	if err != nil || pio.Config() != (Config{}) {
		t.Fatalf("NullIO = %+v, %v", pio.Config(), err)
	}
	pio.Cancel()
	pio.Wait()
	if err := pio.Close(); err != nil {
		t.Fatal(err)
	}

	pio, err = LogFile("/var/log/app/../c1.log")("c1")
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Stdout: "file:///var/log/c1.log", Stderr: "file:///var/log/c1.log"}
	if pio.Config() != want {
		t.Errorf("LogFile config = %+v, want %+v", pio.Config(), want)
	}
	if _, err := LogFile("rel.log")("c1"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("relative log file: %v", err)
	}

	pio, err = CRILog("/var/log/pods/p/c/../0.log")("c1")
	if err != nil {
		t.Fatal(err)
	}
	want = Config{Stdout: "crilog:///var/log/pods/p/0.log", Stderr: "crilog:///var/log/pods/p/0.log"}
	if pio.Config() != want {
		t.Errorf("CRILog config = %+v, want %+v", pio.Config(), want)
	}
	if _, err := CRILog("0.log")("c1"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("relative CRI log: %v", err)
	}
	if isFIFO(want.Stdout) || isFIFO("file:///x") || !isFIFO("/run/berth/.fifo/x/stdout") {
		t.Error("isFIFO does not tell FIFOs from file outputs")
	}
}

// TestSharedWriter: stdout and stderr into one writer that is not safe for
// concurrent use; the race detector checks that writes are serialized.
func TestSharedWriter(t *testing.T) {
	var both bytes.Buffer
	pio, err := NewCreator(WithFIFODir(t.TempDir()), WithStreams(nil, &both, &both))("c1")
	if err != nil {
		t.Fatal(err)
	}
	defer pio.Close()
	out, errw := shimWriter(t, pio.Config().Stdout), shimWriter(t, pio.Config().Stderr)
	var wg sync.WaitGroup
	for _, w := range []*os.File{out, errw} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				w.WriteString("0123456789")
			}
			w.Close()
		}()
	}
	wg.Wait()
	mustWait(t, pio)
	if both.Len() != 2000 {
		t.Errorf("got %d bytes, want 2000", both.Len())
	}
}

// TestOnStdinEOF: the IO of a Creator reports the end of the caller's stdin
// once all of it is in the FIFO, to a callback set before or after; an
// Attach's IO, and a reader that fails, report nothing.
func TestOnStdinEOF(t *testing.T) {
	tests := []struct {
		name   string
		attach bool
		stdin  io.Reader
		want   bool
	}{
		{"creator, reader ends", false, strings.NewReader("input"), true},
		{"creator, reader fails", false, io.MultiReader(strings.NewReader("input"), iotest.ErrReader(errors.New("detached"))), false},
		{"attach, reader ends", true, strings.NewReader("input"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := []Opt{WithStreams(tt.stdin, nil, nil), WithFIFODir(dir)}
			pio, err := NewCreator(opts...)("c1")
			if tt.attach && err == nil {
				pio.Close()
				set, serr := NewFIFOSetInDir(dir, "c1", false)
				if serr != nil {
					t.Fatal(serr)
				}
				defer set.Close()
				pio, err = NewAttach(opts...)(set)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer pio.Close()
			n, ok := pio.(interface{ OnStdinEOF(func()) })
			if !ok {
				t.Fatal("the IO has no OnStdinEOF")
			}
			before, after := make(chan struct{}), make(chan struct{})
			n.OnStdinEOF(func() { close(before) })

			in, err := os.OpenFile(pio.Config().Stdin, os.O_RDONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(in) // the copier closed its end
			in.Close()
			if err != nil || string(got) != "input" {
				t.Fatalf("stdin = %q, %v", got, err)
			}
			wait := 30 * time.Second
			if !tt.want {
				wait = 100 * time.Millisecond
			}
			select {
			case <-before:
				if !tt.want {
					t.Fatal("end of stdin reported")
				}
			case <-time.After(wait):
				if tt.want {
					t.Fatal("end of stdin not reported")
				}
				return
			}
			n.OnStdinEOF(func() { close(after) }) // after the end: at once
			select {
			case <-after:
			case <-time.After(30 * time.Second):
				t.Fatal("a callback set after the end did not run")
			}
		})
	}
}

// The daemon removes only what a Creator made for the process in the
// daemon's own FIFO dir: never a folder elsewhere, another process's
// folder, a file, or anything behind a symlink.
func TestRemoveCreatorFIFOs(t *testing.T) {
	exists := func(p string) bool { _, err := os.Lstat(p); return err == nil }
	t.Run("own folder", func(t *testing.T) {
		root := t.TempDir()
		set, err := NewFIFOSetInDir(root, "c1", false)
		if err != nil {
			t.Fatal(err)
		}
		if err := RemoveCreatorFIFOs(set.Config, root, "c1"); err != nil {
			t.Fatal(err)
		}
		if dir := filepath.Dir(set.Stdin); exists(dir) {
			t.Errorf("FIFO folder %s left", dir)
		}
		// Again, with everything gone: no error.
		if err := RemoveCreatorFIFOs(set.Config, root, "c1"); err != nil {
			t.Fatalf("again: %v", err)
		}
	})
	t.Run("folder with more in it", func(t *testing.T) {
		root := t.TempDir()
		set, err := NewFIFOSetInDir(root, "c1", true)
		if err != nil {
			t.Fatal(err)
		}
		other := filepath.Join(filepath.Dir(set.Stdout), "keep")
		if err := os.WriteFile(other, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := set.Config
		cfg.Stderr = other
		if err := RemoveCreatorFIFOs(cfg, root, "c1"); err != nil {
			t.Fatal(err)
		}
		if exists(set.Stdout) || exists(set.Stdin) || !exists(other) {
			t.Errorf("after removal: stdin %v, stdout %v, other file %v; want false, false, true",
				exists(set.Stdin), exists(set.Stdout), exists(other))
		}
	})
	for _, tc := range []struct {
		name string
		// setup returns the config to remove and what must stay.
		setup func(t *testing.T, root string) (Config, []string)
	}{
		{"folder elsewhere", func(t *testing.T, root string) (Config, []string) {
			set, err := NewFIFOSetInDir(t.TempDir(), "c1", false)
			if err != nil {
				t.Fatal(err)
			}
			return set.Config, []string{set.Stdin, set.Stdout, set.Stderr}
		}},
		{"folder of another id", func(t *testing.T, root string) (Config, []string) {
			set, err := NewFIFOSetInDir(root, "c1-x", false)
			if err != nil {
				t.Fatal(err)
			}
			return set.Config, []string{set.Stdin, set.Stdout}
		}},
		{"nested deeper", func(t *testing.T, root string) (Config, []string) {
			set, err := NewFIFOSetInDir(filepath.Join(root, "c1-1"), "c1", false)
			if err != nil {
				t.Fatal(err)
			}
			return set.Config, []string{set.Stdin}
		}},
		{"symlinked folder", func(t *testing.T, root string) (Config, []string) {
			set, err := NewFIFOSetInDir(t.TempDir(), "c1", false)
			if err != nil {
				t.Fatal(err)
			}
			link := filepath.Join(root, "c1-42")
			if err := os.Symlink(filepath.Dir(set.Stdin), link); err != nil {
				t.Fatal(err)
			}
			return Config{Stdin: filepath.Join(link, "stdin")}, []string{set.Stdin, link}
		}},
		{"a file, not a FIFO", func(t *testing.T, root string) (Config, []string) {
			dir := filepath.Join(root, "c1-7")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			f := filepath.Join(dir, "stdout")
			if err := os.WriteFile(f, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return Config{Stdout: f}, []string{f}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			cfg, kept := tc.setup(t, root)
			if err := RemoveCreatorFIFOs(cfg, root, "c1"); err != nil {
				t.Fatal(err)
			}
			for _, p := range kept {
				if !exists(p) {
					t.Errorf("%s was removed", p)
				}
			}
		})
	}
}
