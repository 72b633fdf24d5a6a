package stdio

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/console"
	runc "github.com/containerd/go-runc"
	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/io/internal/fiforead"
)

// FilePrefix marks an output path as a plain file to append to.
const FilePrefix = "file://"

// copyBufSize is the size of one copy buffer; a process holds at most three.
const copyBufSize = 32 << 10

// copyBufs holds the output copiers' buffers between reads. A process's
// output is quiet most of its life: a copier waiting for output from a pipe
// takes a buffer only once there is something to read and gives it back
// after writing it, so the copiers of idle processes hold none (sync.Pool
// drops what stays unused across two garbage collections).
var copyBufs = sync.Pool{New: func() any {
	b := make([]byte, copyBufSize)
	return &b
}}

// Config says where a process's streams go. An empty path means none.
type Config struct {
	Stdin, Stdout, Stderr string
	Terminal              bool
}

// Validate checks the paths' form: absolute FIFO paths, or file:// or
// crilog:// with an absolute path for output.
func (c Config) Validate() error {
	check := func(name, p string, fileOK bool) error {
		if p == "" {
			return nil
		}
		for _, prefix := range []string{FilePrefix, CRILogPrefix} {
			if strings.HasPrefix(p, prefix) {
				if !fileOK {
					return fmt.Errorf("%s %q: %s is only for output", name, p, prefix)
				}
				p = strings.TrimPrefix(p, prefix)
			}
		}
		if !filepath.IsAbs(p) || strings.ContainsRune(p, 0) {
			return fmt.Errorf("%s %q: not an absolute path", name, p)
		}
		return nil
	}
	return errors.Join(check("stdin", c.Stdin, false), check("stdout", c.Stdout, true), check("stderr", c.Stderr, true))
}

// IO is the stdio of one process. Create it before the runtime call, pass
// RuncIO or ConsoleSocket to the runtime, call Started after the runtime
// returns successfully (or Close on failure).
type IO struct {
	cfg Config

	pipes   runc.IO      // nil with a terminal
	null    *os.File     // /dev/null for the streams not asked for
	socket  *runc.Socket // console socket, with a terminal until Started
	outputs []sink       // stdout, stderr destinations (nil entries skipped)

	mu      sync.Mutex
	console console.Console  // guarded by mu: the pty master, with a terminal
	stdin   *fiforead.Reader // guarded by mu: the stdin FIFO's read end, until stdin ends
	hold    *os.File         // guarded by mu: the shim's own writer on the stdin FIFO, until CloseStdin
	stdinW  io.WriteCloser   // guarded by mu: the process side of stdin (pipes only)

	copiers int           // guarded by mu: output copiers still running
	started bool          // guarded by mu: Started ran; no copier is added after it
	drained chan struct{} // closed once started and every output copier has finished
}

// New prepares the stdio of a process whose streams will be owned by
// uid:gid inside the container.
func New(cfg Config, uid, gid int) (_ *IO, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	i := &IO{cfg: cfg, drained: make(chan struct{})}
	defer func() {
		if err != nil {
			i.Close()
		}
	}()
	logs := map[string]*criLog{} // stdout and stderr naming one crilog share it
	stdout, err := openSink(cfg.Stdout, "stdout", logs)
	if err != nil {
		return nil, fmt.Errorf("stdout: %w", err)
	}
	i.outputs = append(i.outputs, stdout)
	if !cfg.Terminal {
		stderr, err := openSink(cfg.Stderr, "stderr", logs)
		if err != nil {
			return nil, fmt.Errorf("stderr: %w", err)
		}
		i.outputs = append(i.outputs, stderr)
	}
	if cfg.Stdin != "" {
		if i.stdin, err = fiforead.Open(cfg.Stdin); err != nil {
			return nil, fmt.Errorf("stdin: %w", err)
		}
		// Held until CloseStdin: clients closing their ends is then no
		// EOF (see the package doc).
		if i.hold, err = i.stdin.OpenWriter(); err != nil {
			return nil, fmt.Errorf("stdin %s: hold open: %w", cfg.Stdin, err)
		}
	}
	if cfg.Terminal {
		if i.socket, err = runc.NewTempConsoleSocket(); err != nil {
			return nil, fmt.Errorf("console socket: %w", err)
		}
		return i, nil
	}
	if i.pipes, err = runc.NewPipeIO(uid, gid, func(o *runc.IOOption) {
		o.OpenStdin = cfg.Stdin != ""
		o.OpenStdout = cfg.Stdout != ""
		o.OpenStderr = cfg.Stderr != ""
	}); err != nil {
		return nil, fmt.Errorf("stdio pipes: %w", err)
	}
	if i.null, err = os.OpenFile(os.DevNull, os.O_RDWR|unix.O_CLOEXEC, 0); err != nil {
		return nil, err
	}
	i.stdinW = i.pipes.Stdin()
	// Output copiers start now: the process may write as soon as the
	// runtime has started it, before the runtime call returns.
	if r := i.pipes.Stdout(); r != nil {
		i.copyOut(r, stdout)
	}
	if r := i.pipes.Stderr(); r != nil {
		i.copyOut(r, i.outputs[1])
	}
	return i, nil
}

// RuncIO returns the pipes to hand to the runtime, or nil with a terminal.
// A stream nobody asked for is /dev/null: the runtime's own stdio must never
// reach the container, or go-runc would wait for the container to close it.
func (i *IO) RuncIO() runc.IO {
	if i.pipes == nil {
		return nil
	}
	return nullFilled{IO: i.pipes, null: i.null}
}

// nullFilled is a runc.IO whose unset streams are /dev/null.
type nullFilled struct {
	runc.IO
	null *os.File
}

func (n nullFilled) Set(cmd *exec.Cmd) {
	n.IO.Set(cmd)
	if cmd.Stdin == nil {
		cmd.Stdin = n.null
	}
	if cmd.Stdout == nil {
		cmd.Stdout = n.null
	}
	if cmd.Stderr == nil {
		cmd.Stderr = n.null
	}
}

// CloseAfterStart closes the parent's copies of the write ends, so that the
// output copiers see EOF once the container's processes close theirs.
func (n nullFilled) CloseAfterStart() error {
	if c, ok := n.IO.(runc.StartCloser); ok {
		return c.CloseAfterStart()
	}
	return nil
}

// ConsoleSocket returns the socket the runtime sends the pty master to, or
// nil without a terminal.
func (i *IO) ConsoleSocket() runc.ConsoleSocket {
	if i.socket == nil {
		return nil
	}
	return i.socket
}

// Started completes the set-up after the runtime created the process: with
// a terminal it receives the pty master; then it starts copying stdin.
func (i *IO) Started() error {
	if i.socket != nil {
		c, err := i.socket.ReceiveMaster()
		i.socket.Close()
		i.socket = nil
		if err != nil {
			return fmt.Errorf("receive pty master: %w", err)
		}
		i.mu.Lock()
		i.console = c
		i.mu.Unlock()
		i.copyOut(c, i.outputs[0])
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.started = true
	i.closeDrainedLocked()
	if i.stdin == nil {
		return nil
	}
	var dst io.Writer = i.stdinW
	if i.console != nil {
		dst = i.console
	}
	src := i.stdin
	go func() {
		buf := make([]byte, copyBufSize)
		// Ends after CloseStdin once the FIFO is empty, when the
		// process's side fails (it is gone), or at EndStdin.
		io.CopyBuffer(dst, src, buf)
		i.EndStdin()
	}()
	return nil
}

// copyOut drains r into out until r ends. Errors of out never stop it:
// output that cannot be delivered is discarded (see the package doc).
func (i *IO) copyOut(r io.Reader, out sink) {
	i.mu.Lock()
	i.copiers++
	i.mu.Unlock()
	read := bufferedReader(r)
	go func() {
		defer i.copierDone()
		for {
			buf, n, err := read()
			if n > 0 {
				out.write((*buf)[:n])
			}
			if buf != nil {
				copyBufs.Put(buf)
			}
			if err != nil {
				// EOF, or EIO: how a pty master reports that the last
				// slave fd closed. Either way the output ended; closing
				// the destination gives the reader its EOF.
				out.close()
				return
			}
		}
	}()
}

// bufferedReader returns a read of r into a buffer of copyBufs, which the
// caller puts back. A pipe (a syscall.Conn) is read only once the poller
// says it is readable, with a buffer taken then; any other reader (a pty
// master) holds its buffer while it waits.
func bufferedReader(r io.Reader) func() (*[]byte, int, error) {
	if sc, ok := r.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			return func() (*[]byte, int, error) { return readWhenReady(rc) }
		}
	}
	return func() (*[]byte, int, error) {
		buf := copyBufs.Get().(*[]byte)
		n, err := r.Read(*buf)
		return buf, n, err
	}
}

// readWhenReady reads once from rc into a buffer of copyBufs, taken when
// the read finds something (or the end): while the descriptor has nothing
// to read, the buffer goes back to the pool and the poller parks the
// goroutine, as os.File.Read does. A descriptor in blocking mode blocks in
// the read instead, holding its buffer.
func readWhenReady(rc syscall.RawConn) (buf *[]byte, n int, err error) {
	rerr := rc.Read(func(fd uintptr) bool {
		buf = copyBufs.Get().(*[]byte)
		for {
			n, err = unix.Read(int(fd), *buf)
			if err != unix.EINTR {
				break
			}
		}
		if err == unix.EAGAIN {
			copyBufs.Put(buf)
			buf = nil
			return false
		}
		return true
	})
	switch {
	case rerr != nil:
		return buf, 0, rerr
	case err != nil:
		return buf, 0, err
	case n == 0:
		return buf, 0, io.EOF
	}
	return buf, n, nil
}

func (i *IO) copierDone() {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.copiers--
	i.closeDrainedLocked()
}

// closeDrainedLocked closes drained once no copier can be added and none
// runs: the output is all delivered.
func (i *IO) closeDrainedLocked() {
	if !i.started || i.copiers > 0 {
		return
	}
	select {
	case <-i.drained:
	default:
		close(i.drained)
	}
}

// WaitOutput waits until all output of the process was copied, or the
// timeout passed (a process that left a child holding its stdout open never
// drains). It reports whether the output drained.
func (i *IO) WaitOutput(timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-i.drained:
		return true
	case <-t.C:
		return false
	}
}

// CloseStdin ends the process's stdin after what the stdin FIFO holds now:
// the process reads that, then EOF. It returns without waiting for that.
// Clients that still hold the FIFO open do not delay the end; what they
// write later is not delivered.
func (i *IO) CloseStdin() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	var err error
	if i.hold != nil {
		err = i.hold.Close()
		i.hold = nil
	}
	if i.stdin != nil {
		i.stdin.Cancel() // the copier ends once the FIFO is empty
	}
	return err
}

// EndStdin ends the process's stdin at once, dropping what the FIFO still
// holds: for a process that exited, whose stdin nobody reads any more
// (a client still writing gets EPIPE).
func (i *IO) EndStdin() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	var errs []error
	if i.hold != nil {
		errs = append(errs, i.hold.Close())
		i.hold = nil
	}
	if i.stdin != nil {
		errs = append(errs, i.stdin.Close())
		i.stdin = nil
		if i.console != nil {
			errs = append(errs, sendEOF(i.console))
		}
	}
	if i.stdinW != nil {
		errs = append(errs, i.stdinW.Close())
		i.stdinW = nil
	}
	return errors.Join(errs...)
}

// sendEOF writes the terminal's EOF character, which a reader in canonical
// mode sees as end of input.
func sendEOF(c console.Console) error {
	t, err := unix.IoctlGetTermios(int(c.Fd()), unix.TCGETS)
	if err != nil {
		return err
	}
	_, err = c.Write([]byte{t.Cc[unix.VEOF]})
	return err
}

// Resize sets the pty's window size.
func (i *IO) Resize(width, height uint32) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.console == nil {
		return errors.New("process has no terminal")
	}
	return i.console.Resize(console.WinSize{Width: uint16(width), Height: uint16(height)})
}

// Terminal reports whether the process has a pty.
func (i *IO) Terminal() bool { return i.cfg.Terminal }

// Config returns what the IO was made from.
func (i *IO) Config() Config { return i.cfg }

// Close releases everything. Output still buffered in the kernel is lost;
// call WaitOutput first to deliver it.
func (i *IO) Close() error {
	errs := []error{i.EndStdin()}
	if i.socket != nil {
		errs = append(errs, i.socket.Close())
		i.socket = nil
	}
	if i.pipes != nil {
		errs = append(errs, i.pipes.Close())
	}
	if i.null != nil {
		i.null.Close()
	}
	i.mu.Lock()
	if i.console != nil {
		errs = append(errs, i.console.Close())
		i.console = nil
	}
	i.mu.Unlock()
	for _, o := range i.outputs {
		if o != nil {
			o.close()
		}
	}
	return errors.Join(errs...)
}

func checkFifo(p string) error {
	st, err := os.Lstat(p)
	if err != nil {
		return err
	}
	if st.Mode()&fs.ModeNamedPipe == 0 {
		return fmt.Errorf("%s: not a FIFO", p)
	}
	return nil
}

// ReopenLog closes and reopens the process's CRI log files, for log
// rotation: output after it goes to a file at the same path, made anew when
// the old one was renamed away.
func (i *IO) ReopenLog() error {
	var errs []error
	reopened := map[*criLog]bool{}
	for _, o := range i.outputs {
		if s, ok := o.(*criStream); ok && !reopened[s.log] {
			reopened[s.log] = true
			errs = append(errs, s.log.reopen())
		}
	}
	if len(reopened) == 0 {
		return fmt.Errorf("process output is not a crilog: %w", errdefs.ErrFailedPrecondition)
	}
	return errors.Join(errs...)
}

// sink is one destination of a stream's output. Its copier goroutine calls
// write; close may come from any goroutine.
type sink interface {
	write(p []byte)
	close()
}

// openSink opens the destination p of the stream name, nil for none. A
// crilog path already in logs is shared.
func openSink(p, name string, logs map[string]*criLog) (sink, error) {
	if !strings.HasPrefix(p, CRILogPrefix) {
		o, err := openOutput(p)
		if o == nil {
			return nil, err // no typed nil in the interface
		}
		return o, err
	}
	path := strings.TrimPrefix(p, CRILogPrefix)
	l, ok := logs[path]
	if !ok {
		var err error
		if l, err = openCRILog(path); err != nil {
			return nil, err
		}
		logs[path] = l
	}
	return newCRIStream(l, name), nil
}

// output is one destination of process output. One copier goroutine
// writes to it; close may come from any goroutine, also while a write waits
// for a reader that does not read, and ends that write.
type output struct {
	path   string     // FIFO path, empty for a file
	mu     sync.Mutex // guards f and closed; never held during a write
	f      *os.File   // for a FIFO nil while no reader has it open
	closed bool
}

func openOutput(p string) (*output, error) {
	if p == "" {
		return nil, nil
	}
	if strings.HasPrefix(p, FilePrefix) {
		fp := strings.TrimPrefix(p, FilePrefix)
		if err := os.MkdirAll(filepath.Dir(fp), 0o755); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(fp, os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o640)
		if err != nil {
			return nil, fmt.Errorf("log file: %w", err)
		}
		return &output{f: f}, nil
	}
	if err := checkFifo(p); err != nil {
		return nil, err
	}
	o := &output{path: p}
	o.reopenLocked()
	return o, nil
}

// reopenLocked opens the FIFO for writing if a reader has it open. The
// descriptor is non-blocking, so the runtime poller parks a full write
// instead of blocking a thread, a reader closing wakes it with EPIPE, and
// close wakes it too.
func (o *output) reopenLocked() {
	// Checked before it is opened for writing, through a descriptor that
	// opens nothing: whatever the path was swapped to (a file, a device,
	// a terminal) is never opened, let alone written.
	pf, err := os.OpenFile(o.path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return // removed: nothing to deliver to
	}
	defer pf.Close()
	if fiforead.IsFIFO(pf) != nil {
		return
	}
	f, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", pf.Fd()), os.O_WRONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		// ENXIO: no reader; anything else: nothing to deliver to either.
		// Both mean discard.
		return
	}
	o.f = f
}

func (o *output) write(p []byte) {
	if o == nil {
		return
	}
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return
	}
	if o.f == nil && o.path != "" {
		o.reopenLocked()
	}
	f := o.f
	o.mu.Unlock()
	if f == nil {
		return
	}
	if _, err := f.Write(p); err != nil && o.path != "" {
		// The reader went away (EPIPE), or close ended the write: discard
		// until a reader is back.
		o.mu.Lock()
		if o.f == f {
			o.f = nil
			f.Close()
		}
		o.mu.Unlock()
	}
}

func (o *output) close() {
	if o == nil {
		return
	}
	o.mu.Lock()
	o.closed = true
	f := o.f
	o.f = nil
	o.mu.Unlock()
	if f != nil {
		f.Close()
	}
}
