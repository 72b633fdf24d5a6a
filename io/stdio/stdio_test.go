package stdio

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runc "github.com/containerd/go-runc"
	"golang.org/x/sys/unix"
)

// ioTimeout bounds every wait, so that a write that blocks or a reader
// that never sees EOF fails the test instead of hanging it.
const ioTimeout = 30 * time.Second

// quiet is how long a reader must get nothing to count as having nothing.
const quiet = 100 * time.Millisecond

// mkfifo makes a FIFO in the test's temporary directory.
func mkfifo(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := unix.Mkfifo(p, 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	return p
}

// openReader opens the read side of a FIFO without waiting for a writer,
// the way a client attaches. Reads go through the runtime poller, so read
// deadlines work. Note that a read while no writer has the FIFO open
// returns EOF at once.
func openReader(t *testing.T, p string) *os.File {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatalf("open reader: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// openTestOutput is openOutput that fails the test on error and closes the
// output at the end.
func openTestOutput(t *testing.T, p string) *output {
	t.Helper()
	o, err := openOutput(p)
	if err != nil {
		t.Fatalf("openOutput(%q): %v", p, err)
	}
	t.Cleanup(o.close)
	return o
}

// write calls o.write and fails if it does not return within ioTimeout.
func write(t *testing.T, o *output, s string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		o.write([]byte(s))
	}()
	select {
	case <-done:
	case <-time.After(ioTimeout):
		t.Fatalf("write of %d bytes blocked for %v", len(s), ioTimeout)
	}
}

// readExactly reads len(want) bytes from f and compares them with want.
func readExactly(t *testing.T, f *os.File, want string) {
	t.Helper()
	f.SetReadDeadline(time.Now().Add(ioTimeout))
	buf := make([]byte, len(want))
	if _, err := io.ReadFull(f, buf); err != nil {
		t.Fatalf("read %q: got %q: %v", want, buf, err)
	}
	if string(buf) != want {
		t.Fatalf("read %q, want %q", buf, want)
	}
}

// expectNothing fails if f yields data within quiet. A writer must have
// the FIFO open, or the read returns EOF at once.
func expectNothing(t *testing.T, f *os.File) {
	t.Helper()
	f.SetReadDeadline(time.Now().Add(quiet))
	buf := make([]byte, 64)
	n, err := f.Read(buf)
	if n > 0 {
		t.Fatalf("unexpected data %q", buf[:n])
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: %v, want a deadline while the writer is open", err)
	}
}

// readAll reads f to EOF within ioTimeout.
func readAll(t *testing.T, f *os.File) string {
	t.Helper()
	f.SetReadDeadline(time.Now().Add(ioTimeout))
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("read to EOF: got %q: %v", b, err)
	}
	return string(b)
}

func TestOutputNoReaderDiscards(t *testing.T) {
	p := mkfifo(t, "out")
	o := openTestOutput(t, p)
	for range 3 {
		write(t, o, "lost")
	}
	// Enough to fill a pipe many times over: still discarded, not blocked.
	write(t, o, strings.Repeat("x", 1<<20))
	if o.f != nil {
		t.Errorf("output holds a descriptor with no reader")
	}
}

func TestOutputLateReader(t *testing.T) {
	p := mkfifo(t, "out")
	o := openTestOutput(t, p)
	write(t, o, "before") // nobody reads: gone

	r := openReader(t, p)
	write(t, o, "after")
	readExactly(t, r, "after")
	expectNothing(t, r)

	write(t, o, "more")
	readExactly(t, r, "more")
}

// TestOutputReaderFirst is the order the package doc asks of clients: the
// reader is open before the output is, and gets the first write.
func TestOutputReaderFirst(t *testing.T) {
	p := mkfifo(t, "out")
	r := openReader(t, p)
	o := openTestOutput(t, p)
	write(t, o, "first")
	readExactly(t, r, "first")
}

func TestOutputReaderGoesAndComesBack(t *testing.T) {
	p := mkfifo(t, "out")
	o := openTestOutput(t, p)
	r1 := openReader(t, p)
	write(t, o, "one")
	readExactly(t, r1, "one")
	r1.Close()

	// The first write after the reader left sees EPIPE, the next ones find
	// no reader; all return and are discarded. (Go ignores SIGPIPE for
	// descriptors other than stdout and stderr.)
	for _, s := range []string{"gone1", "gone2", strings.Repeat("y", 1<<20)} {
		write(t, o, s)
	}
	if o.f != nil {
		t.Errorf("output holds a descriptor after its reader left")
	}

	r2 := openReader(t, p)
	write(t, o, "two")
	readExactly(t, r2, "two")
	expectNothing(t, r2)
}

// TestOutputBackPressure checks that a reader slower than the writer gets
// every byte: the write waits for it rather than dropping.
func TestOutputBackPressure(t *testing.T) {
	p := mkfifo(t, "out")
	r := openReader(t, p)
	o := openTestOutput(t, p)
	data := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB, many pipe buffers
	done := make(chan struct{})
	go func() {
		defer close(done)
		o.write(data)
		o.close()
	}()
	got := readAll(t, r)
	if got != string(data) {
		t.Fatalf("read %d bytes, want %d, the same", len(got), len(data))
	}
	select {
	case <-done:
	case <-time.After(ioTimeout):
		t.Fatal("write did not return after the reader read everything")
	}
}

// TestOutputReaderLeavesDuringWrite checks that a write parked on a full
// FIFO returns when the reader closes, instead of waiting for ever.
func TestOutputReaderLeavesDuringWrite(t *testing.T) {
	p := mkfifo(t, "out")
	r := openReader(t, p)
	o := openTestOutput(t, p)
	done := make(chan struct{})
	go func() {
		defer close(done)
		o.write(make([]byte, 1<<20))
	}()
	select {
	case <-done:
		t.Fatal("1 MiB write into an unread FIFO returned: no back-pressure")
	case <-time.After(quiet):
	}
	r.Close()
	select {
	case <-done:
	case <-time.After(ioTimeout):
		t.Fatal("write still blocked after the reader closed")
	}
	write(t, o, "discarded")
}

// TestOutputCloseDuringBlockedWrite closes an output whose write is parked
// on a reader that holds the FIFO open but never reads (a hung client).
// IO.Close calls close on every output, so this is Close of the shim's
// stdio: it must not wait for the client.
func TestOutputCloseDuringBlockedWrite(t *testing.T) {
	p := mkfifo(t, "out")
	r := openReader(t, p)
	o, err := openOutput(p)
	if err != nil {
		t.Fatal(err)
	}
	written := make(chan struct{})
	go func() {
		defer close(written)
		o.write(make([]byte, 1<<20))
	}()
	t.Cleanup(func() {
		// Let a write still parked return before the test ends.
		r.Close()
		<-written
	})
	select {
	case <-written:
		t.Fatal("1 MiB write into an unread FIFO returned: no back-pressure")
	case <-time.After(quiet):
	}
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		o.close()
	}()
	select {
	case <-closed:
	case <-time.After(ioTimeout):
		t.Fatalf("close blocked for %v behind a write to a reader that does not read", ioTimeout)
	}
}

func TestOutputFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name   string
		path   string // relative to dir
		before *string
		writes []string
		want   string
	}{
		{"new file", "log", nil, []string{"a", "b", "c"}, "abc"},
		{"new directories", "x/y/log", nil, []string{"line\n"}, "line\n"},
		{"appends to existing", "old", ptr("kept\n"), []string{"new\n"}, "kept\nnew\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fp := filepath.Join(dir, tt.path)
			if tt.before != nil {
				if err := os.WriteFile(fp, []byte(*tt.before), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			o := openTestOutput(t, FilePrefix+fp)
			for _, s := range tt.writes {
				write(t, o, s)
			}
			// A second output on the same file appends too, as a restarted
			// shim would.
			o2 := openTestOutput(t, FilePrefix+fp)
			write(t, o2, "|")
			o.close()
			o2.close()
			b, err := os.ReadFile(fp)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := string(b), tt.want+"|"; got != want {
				t.Errorf("file holds %q, want %q", got, want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestOpenOutputErrors(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "regular")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(regular, link); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		is   error // nil: any error
	}{
		{"missing FIFO", filepath.Join(dir, "missing"), fs.ErrNotExist},
		{"not a FIFO", regular, nil},
		{"file through a symlink", FilePrefix + link, unix.ELOOP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := openOutput(tt.path)
			if err == nil {
				o.close()
				t.Fatalf("openOutput(%q) succeeded", tt.path)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("err = %v, want %v", err, tt.is)
			}
		})
	}
	b, err := os.ReadFile(regular)
	if err != nil || len(b) != 0 {
		t.Errorf("symlink target changed: %q, %v", b, err)
	}
}

// TestOutputNil checks that an output nobody asked for takes writes.
func TestOutputNil(t *testing.T) {
	o, err := openOutput("")
	if err != nil || o != nil {
		t.Fatalf("openOutput(\"\") = %v, %v; want nil, nil", o, err)
	}
	o.write([]byte("x"))
	o.close()
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"empty", Config{}, true},
		{"absolute FIFOs", Config{Stdin: "/run/in", Stdout: "/run/out", Stderr: "/run/err"}, true},
		{"file outputs", Config{Stdout: "file:///var/log/out", Stderr: "file:///var/log/err"}, true},
		{"terminal", Config{Stdin: "/run/in", Stdout: "/run/out", Terminal: true}, true},
		{"relative stdin", Config{Stdin: "in"}, false},
		{"relative stdout", Config{Stdout: "./out"}, false},
		{"relative stderr", Config{Stderr: "err"}, false},
		{"relative file", Config{Stdout: "file://log"}, false},
		{"empty file", Config{Stdout: "file://"}, false},
		{"file stdin", Config{Stdin: "file:///var/log/in"}, false},
		{"NUL in stdin", Config{Stdin: "/run/i\x00n"}, false},
		{"NUL in stdout", Config{Stdout: "/run/o\x00ut"}, false},
		{"NUL in file", Config{Stderr: "file:///var/\x00log"}, false},
		{"crilog outputs", Config{Stdout: "crilog:///var/log/pods/p/c/0.log", Stderr: "crilog:///var/log/pods/p/c/0.log"}, true},
		{"relative crilog", Config{Stdout: "crilog://0.log"}, false},
		{"empty crilog", Config{Stderr: "crilog://"}, false},
		{"crilog stdin", Config{Stdin: "crilog:///var/log/in"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate(%+v) = %v, want ok %v", tt.cfg, err, tt.ok)
			}
			if err == nil {
				return
			}
			if _, nerr := New(tt.cfg, os.Getuid(), os.Getgid()); nerr == nil {
				t.Errorf("New accepted a config Validate rejects")
			}
		})
	}
}

// TestValidateNamesStream checks that each bad path is reported with its
// stream, and that all are reported at once.
func TestValidateNamesStream(t *testing.T) {
	err := Config{Stdin: "a", Stdout: "b", Stderr: "c"}.Validate()
	if err == nil {
		t.Fatal("Validate accepted relative paths")
	}
	for _, name := range []string{"stdin", "stdout", "stderr"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
}

func TestNewStdinNotFIFO(t *testing.T) {
	regular := filepath.Join(t.TempDir(), "in")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if i, err := New(Config{Stdin: regular}, os.Getuid(), os.Getgid()); err == nil {
		i.Close()
		t.Fatal("New accepted a regular file as the stdin FIFO")
	}
}

// stdioFIFOs are the client's side of a process's FIFOs.
type stdioFIFOs struct {
	cfg    Config
	stdout *os.File // read side, open before New as the doc asks
	stderr *os.File // read side
}

func makeFIFOs(t *testing.T) stdioFIFOs {
	t.Helper()
	f := stdioFIFOs{cfg: Config{
		Stdin:  mkfifo(t, "stdin"),
		Stdout: mkfifo(t, "stdout"),
		Stderr: mkfifo(t, "stderr"),
	}}
	f.stdout = openReader(t, f.cfg.Stdout)
	f.stderr = openReader(t, f.cfg.Stderr)
	return f
}

// startWithIO does what the shim does around a runtime call, with cmd in
// place of the runtime: New, RuncIO().Set, start, CloseAfterStart, Started.
func startWithIO(t *testing.T, cfg Config, cmd *exec.Cmd) *IO {
	t.Helper()
	sio, err := New(cfg, os.Getuid(), os.Getgid())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { sio.Close() })
	rio := sio.RuncIO()
	if rio == nil {
		t.Fatal("RuncIO is nil without a terminal")
	}
	rio.Set(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", cmd.Args, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	sc, ok := rio.(runc.StartCloser)
	if !ok {
		t.Fatal("RuncIO is not a runc.StartCloser")
	}
	if err := sc.CloseAfterStart(); err != nil {
		t.Fatalf("CloseAfterStart: %v", err)
	}
	if err := sio.Started(); err != nil {
		t.Fatalf("Started: %v", err)
	}
	return sio
}

// openStdinWriter opens the write side of the stdin FIFO as a client does;
// the shim has its read side open (or opening), so this does not block
// for long.
func openStdinWriter(t *testing.T, p string) *os.File {
	t.Helper()
	type result struct {
		f   *os.File
		err error
	}
	done := make(chan result, 1)
	go func() {
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		done <- result{f, err}
	}()
	select {
	case res := <-done:
		if res.err != nil {
			t.Fatalf("open stdin writer: %v", res.err)
		}
		t.Cleanup(func() { res.f.Close() })
		return res.f
	case <-time.After(ioTimeout):
		t.Fatal("open of the stdin FIFO for writing blocked: the shim has no reader on it")
		return nil
	}
}

func TestIOPipes(t *testing.T) {
	tests := []struct {
		name        string
		script      string
		writerStays bool // CloseStdin while the client still holds its writer
		wantOut     string
		wantErr     string
	}{
		{"cat, writer closes, then CloseStdin", "cat", false, "ping", ""},
		{"cat, CloseStdin while the writer is open", "cat", true, "ping", ""},
		{"stdout and stderr", "cat; echo oops >&2", false, "ping", "oops\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fifos := makeFIFOs(t)
			cmd := exec.Command("sh", "-c", tt.script)
			sio := startWithIO(t, fifos.cfg, cmd)

			w := openStdinWriter(t, fifos.cfg.Stdin)
			if _, err := w.Write([]byte("ping")); err != nil {
				t.Fatalf("write stdin: %v", err)
			}
			if !tt.writerStays {
				w.Close()
			}
			if err := sio.CloseStdin(); err != nil {
				t.Fatalf("CloseStdin: %v", err)
			}
			if got := readAll(t, fifos.stdout); got != tt.wantOut {
				t.Errorf("stdout = %q, want %q", got, tt.wantOut)
			}
			if got := readAll(t, fifos.stderr); got != tt.wantErr {
				t.Errorf("stderr = %q, want %q", got, tt.wantErr)
			}
			if !sio.WaitOutput(ioTimeout) {
				t.Error("WaitOutput: output did not drain")
			}
			if err := cmd.Wait(); err != nil {
				t.Errorf("%s: %v", tt.script, err)
			}
			if err := sio.CloseStdin(); err != nil {
				t.Errorf("second CloseStdin: %v", err)
			}
		})
	}
}

// finishes reads the rest of stdout, which must be want, and waits for cmd
// to exit 0.
func finishes(t *testing.T, f stdioFIFOs, cmd *exec.Cmd, want string) {
	t.Helper()
	if got := readAll(t, f.stdout); got != want {
		t.Errorf("stdout: %d bytes %.40q, want %d bytes %.40q", len(got), got, len(want), want)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("%v: %v", cmd.Args, err)
	}
}

// TestIOStdinOutlivesWriters: clients closing their ends of the stdin FIFO
// (a detach, a client that dies) do not end the process's stdin; the next
// client types into the same process, and CloseStdin ends it.
func TestIOStdinOutlivesWriters(t *testing.T) {
	fifos := makeFIFOs(t)
	cmd := exec.Command("sh", "-c", "cat; echo eof")
	sio := startWithIO(t, fifos.cfg, cmd)
	for _, s := range []string{"one\n", "two\n", "three\n"} {
		// cat echoing a line after an earlier writer left is the proof:
		// an EOF would have ended it.
		w := openStdinWriter(t, fifos.cfg.Stdin)
		if _, err := w.WriteString(s); err != nil {
			t.Fatalf("write stdin: %v", err)
		}
		readExactly(t, fifos.stdout, s)
		w.Close()
	}
	if err := sio.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	finishes(t, fifos, cmd, "eof\n")
}

// TestIOCloseStdinDeliversWhatIsWritten: a client writes, closes its end and
// calls CloseStdin at once, as the client library does at the end of a
// pipe; what is still in the FIFO then reaches the process before EOF.
func TestIOCloseStdinDeliversWhatIsWritten(t *testing.T) {
	fifos := makeFIFOs(t)
	cmd := exec.Command("cat")
	sio := startWithIO(t, fifos.cfg, cmd)
	// Less than the FIFOs, pipes and buffers on the way hold, so that the
	// write returns while nobody reads stdout yet.
	in := bytes.Repeat([]byte("0123456789abcdef"), 6<<10)
	w := openStdinWriter(t, fifos.cfg.Stdin)
	if _, err := w.Write(in); err != nil {
		t.Fatalf("write stdin: %v", err)
	}
	w.Close()
	if err := sio.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	finishes(t, fifos, cmd, string(in))
}

// TestIOEndStdin: EndStdin (the process exited) ends stdin at once, also
// while a client holds its writer, and that client's next write fails
// instead of blocking.
func TestIOEndStdin(t *testing.T) {
	fifos := makeFIFOs(t)
	cmd := exec.Command("sh", "-c", "cat; echo eof")
	sio := startWithIO(t, fifos.cfg, cmd)
	w := openStdinWriter(t, fifos.cfg.Stdin)
	if _, err := w.WriteString("x\n"); err != nil {
		t.Fatal(err)
	}
	readExactly(t, fifos.stdout, "x\n")
	if err := sio.EndStdin(); err != nil {
		t.Fatal(err)
	}
	finishes(t, fifos, cmd, "eof\n")
	if _, err := w.WriteString("late\n"); !errors.Is(err, unix.EPIPE) {
		t.Errorf("write after EndStdin: %v, want EPIPE", err)
	}
}

// TestIOUnsetStreamsAreNull checks that a stream nobody asked for is
// /dev/null for the process, never the test's own stdio.
func TestIOUnsetStreamsAreNull(t *testing.T) {
	stdout := mkfifo(t, "stdout")
	r := openReader(t, stdout)
	cmd := exec.Command("sh", "-c", `read x; echo "in:$x"; echo err >&2`)
	sio := startWithIO(t, Config{Stdout: stdout}, cmd)
	if got := readAll(t, r); got != "in:\n" {
		t.Errorf("stdout = %q, want %q (stdin at EOF)", got, "in:\n")
	}
	if !sio.WaitOutput(ioTimeout) {
		t.Error("WaitOutput: output did not drain")
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("command: %v", err)
	}
	if f, ok := cmd.Stderr.(*os.File); !ok || f.Name() != os.DevNull {
		t.Errorf("stderr = %v, want %s", cmd.Stderr, os.DevNull)
	}
}

// TestIOWaitOutputChildHoldsStdout checks that WaitOutput gives up when a
// child of the process keeps its stdout open.
func TestIOWaitOutputChildHoldsStdout(t *testing.T) {
	stdout := mkfifo(t, "stdout")
	r := openReader(t, stdout)
	gate, release, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		gate.Close()
		release.Close()
	})
	// The background child holds stdout until fd 3 reaches EOF.
	cmd := exec.Command("sh", "-c", `echo hi; cat <&3 & exit 0`)
	cmd.ExtraFiles = []*os.File{gate}
	sio := startWithIO(t, Config{Stdout: stdout}, cmd)
	gate.Close()
	readExactly(t, r, "hi\n")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("command: %v", err)
	}
	if sio.WaitOutput(quiet) {
		t.Fatal("WaitOutput reported drained while a child holds stdout")
	}
	release.Close()
	if !sio.WaitOutput(ioTimeout) {
		t.Fatal("WaitOutput: output did not drain after the child exited")
	}
	if got := readAll(t, r); got != "" {
		t.Errorf("more stdout %q", got)
	}
}

// TestIOCloseBeforeStarted checks that Close releases an IO whose process
// never started, with its stdin FIFO.
func TestIOCloseBeforeStarted(t *testing.T) {
	fifos := makeFIFOs(t)
	sio, err := New(fifos.cfg, os.Getuid(), os.Getgid())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sio.Close() }()
	select {
	case <-done:
	case <-time.After(ioTimeout):
		t.Fatal("Close blocked")
	}
	if sio.WaitOutput(quiet) {
		t.Error("WaitOutput true for a process never started")
	}
}

// TestIOCloseWithStalledReader closes the stdio of a process whose output
// fills a FIFO that a client holds open but does not read (a hung or
// stopped daemon). Close runs when the task is deleted; it must not wait
// for the client.
func TestIOCloseWithStalledReader(t *testing.T) {
	stdout := mkfifo(t, "stdout")
	r := openReader(t, stdout)
	cmd := exec.Command("head", "-c", "1048576", "/dev/zero")
	sio := startWithIO(t, Config{Stdout: stdout}, cmd)
	t.Cleanup(func() { r.Close() }) // runs first: unblocks a stuck copier
	// 1 MiB fills the FIFO and the pipe; the copier parks on the FIFO.
	time.Sleep(quiet)
	done := make(chan error, 1)
	go func() { done <- sio.Close() }()
	select {
	case <-done:
	case <-time.After(ioTimeout):
		t.Fatalf("Close blocked for %v behind a client that does not read", ioTimeout)
	}
}

// TestReadWhenReady reads a pipe through readWhenReady as the output
// copiers do: output written after the read began, the end, and a close
// while it waits; and in blocking mode, where the read blocks instead.
func TestReadWhenReady(t *testing.T) {
	for _, blocking := range []bool{false, true} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		if blocking {
			r.Fd() // sets the descriptor blocking
		}
		rc, err := r.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		type result struct {
			data string
			err  error
		}
		read := func() <-chan result {
			c := make(chan result, 1)
			go func() {
				buf, n, err := readWhenReady(rc)
				var data string
				if buf != nil {
					data = string((*buf)[:n])
					copyBufs.Put(buf)
				} else if n != 0 {
					t.Errorf("blocking %v: %d bytes read without a buffer", blocking, n)
				}
				c <- result{data, err}
			}()
			return c
		}
		wait := func(c <-chan result) result {
			t.Helper()
			select {
			case res := <-c:
				return res
			case <-time.After(ioTimeout):
				t.Fatalf("blocking %v: read did not return within %v", blocking, ioTimeout)
				return result{}
			}
		}
		c := read()
		select {
		case res := <-c:
			t.Fatalf("blocking %v: read returned %+v before anything was written", blocking, res)
		case <-time.After(quiet):
		}
		if _, err := w.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		if res := wait(c); res.data != "hello" || res.err != nil {
			t.Fatalf("blocking %v: read %q, %v; want hello", blocking, res.data, res.err)
		}
		w.Close()
		if res := wait(read()); res.data != "" || !errors.Is(res.err, io.EOF) {
			t.Fatalf("blocking %v: after the writer closed: read %q, %v; want EOF", blocking, res.data, res.err)
		}
		r.Close()
	}

	// Closing the read end wakes a reader that waits.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	rc, err := r.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		buf, _, err := readWhenReady(rc)
		if buf != nil {
			copyBufs.Put(buf)
		}
		done <- err
	}()
	time.Sleep(quiet)
	r.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("read of a closed pipe returned no error")
		}
	case <-time.After(ioTimeout):
		t.Fatalf("closing the pipe did not end the read within %v", ioTimeout)
	}
}
