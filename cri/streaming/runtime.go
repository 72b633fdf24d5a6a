package streaming

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	remotecommand "k8s.io/cri-streaming/pkg/streaming/remotecommand"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/cri/netns"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/io/cio"
	"github.com/berthrt/berth/namespaces"
)

const (
	// cleanupTimeout bounds the kill and delete of an exec process after
	// its stream ended.
	cleanupTimeout = 10 * time.Second
	// dialTimeout bounds a port-forward's connect inside the pod.
	dialTimeout = 10 * time.Second
)

// AttachTarget is what Attach needs of a container beyond its task.
type AttachTarget struct {
	// LogPath is the container's CRI log file; "" when it has none, and
	// then there is no output to attach to.
	LogPath string
	// StdinFIFO is the FIFO the shim reads the container's stdin from; ""
	// when the container was created without stdin.
	StdinFIFO string
	// StdinOnce: the end of the first attached client's input ends the
	// container's stdin.
	StdinOnce bool
}

// Runtime runs the streams of the server against berthd's tasks. Its
// fields are set once, before the server serves.
type Runtime struct {
	// Client reaches berthd's services; calls run in Namespace.
	Client    *client.Client
	Namespace string
	// FIFODir holds exec processes' FIFOs.
	FIFODir string
	// PodNetNS returns the path of the pinned network namespace of the pod
	// sandbox id, or "" when it uses the host's network.
	PodNetNS func(ctx context.Context, sandboxID string) (string, error)
	// Attachable returns where a container's init output and input are.
	Attachable func(ctx context.Context, containerID string) (AttachTarget, error)
}

// exitError is a non-zero exit of an exec process, in the shape the
// streaming library reports as an exit code (k8s.io/utils/exec's
// ExitError).
type exitError struct{ code int }

func (e exitError) Error() string   { return "command terminated with exit code " + strconv.Itoa(e.code) }
func (e exitError) String() string  { return e.Error() }
func (e exitError) Exited() bool    { return true }
func (e exitError) ExitStatus() int { return e.code }

func (r *Runtime) ctx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, r.Namespace)
}

// Exec runs cmd in container id's task and copies its stdio until it
// exits; see the package doc.
func (r *Runtime) Exec(ctx context.Context, id string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) (err error) {
	ctx = r.ctx(ctx)
	if len(cmd) == 0 || cmd[0] == "" {
		return fmt.Errorf("exec: a command is required: %w", errdefs.ErrInvalidArgument)
	}
	ctr, err := r.Client.LoadContainer(ctx, id)
	if err != nil {
		return err
	}
	spec, err := ctr.Spec(ctx)
	if err != nil {
		return err
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return err
	}
	pspec := *spec.Process
	pspec.Args, pspec.Terminal = cmd, tty
	if tty && !hasEnv(pspec.Env, "TERM") {
		pspec.Env = append(append([]string(nil), pspec.Env...), "TERM=xterm")
	}
	opts := []cio.Opt{cio.WithStreams(reader(in), writer(out), writer(errw)), cio.WithFIFODir(r.FIFODir)}
	if tty {
		opts = append(opts, cio.WithTerminal)
	}
	proc, err := task.Exec(ctx, "exec-"+randomHex(8), &pspec, cio.NewCreator(opts...))
	if err != nil {
		return fmt.Errorf("exec in %s: %w", id, err)
	}
	cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	defer func() {
		if _, derr := proc.Delete(cleanup); derr != nil && !errdefs.IsNotFound(derr) {
			err = errors.Join(err, derr)
		}
	}()
	exitc, err := proc.Wait(cleanup)
	if err != nil {
		return err
	}
	if err := proc.Start(ctx); err != nil {
		return fmt.Errorf("exec in %s: %w", id, err)
	}
	stopResize := r.forwardResize(ctx, proc, resize)
	defer stopResize()
	var st client.ExitStatus
	select {
	case st = <-exitc:
	case <-ctx.Done():
		// The client went away: the process is nobody's any more.
		if kerr := proc.Kill(cleanup, syscall.SIGKILL); kerr != nil && !errdefs.IsNotFound(kerr) {
			return errors.Join(ctx.Err(), kerr)
		}
		<-exitc
		return ctx.Err()
	}
	if err := st.Error(); err != nil {
		return err
	}
	// All output is in the client's streams before the status goes out.
	proc.IO().Wait()
	if st.ExitCode() != 0 {
		return exitError{int(st.ExitCode())}
	}
	return nil
}

// forwardResize resizes proc's terminal as the client's changes, until
// the returned stop is called.
func (r *Runtime) forwardResize(ctx context.Context, proc client.Process, resize <-chan remotecommand.TerminalSize) (stop func()) {
	if resize == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case sz, ok := <-resize:
				if !ok {
					return
				}
				if sz.Width == 0 || sz.Height == 0 {
					continue
				}
				// A failed resize (the process just exited) is no
				// reason to end the stream.
				_ = proc.Resize(ctx, uint32(sz.Width), uint32(sz.Height))
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// Attach connects the client's streams to container id's init process;
// see the package doc.
func (r *Runtime) Attach(ctx context.Context, id string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	ctx = r.ctx(ctx)
	target, err := r.Attachable(ctx, id)
	if err != nil {
		return err
	}
	ctr, err := r.Client.LoadContainer(ctx, id)
	if err != nil {
		return err
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return err
	}
	waitCtx, cancelWait := context.WithCancel(ctx)
	defer cancelWait()
	exitc, err := task.Wait(waitCtx)
	if err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		select {
		case <-exitc:
			close(exited)
		case <-waitCtx.Done():
		}
	}()
	if out == nil && errw == nil && in == nil {
		return fmt.Errorf("attach to %s: no stream asked for: %w", id, errdefs.ErrInvalidArgument)
	}
	if (out != nil || errw != nil) && target.LogPath == "" {
		return fmt.Errorf("attach to %s: the container has no log, which its output is read from: %w", id, errdefs.ErrFailedPrecondition)
	}
	if in != nil && target.StdinFIFO == "" {
		return fmt.Errorf("attach to %s: the container was created without stdin: %w", id, errdefs.ErrFailedPrecondition)
	}
	stopResize := r.forwardResize(ctx, task, resize)
	defer stopResize()

	followCtx, stopFollow := context.WithCancel(ctx)
	defer stopFollow()
	var wg sync.WaitGroup
	if in != nil {
		f, err := openFIFOWriter(target.StdinFIFO)
		if err != nil {
			return fmt.Errorf("attach to %s: stdin: %w", id, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer f.Close()
			_, cerr := io.Copy(f, in)
			if cerr == nil && target.StdinOnce {
				// The client's EOF is the container's: the shim lets go
				// of its own writer, and the process reads EOF after
				// what the FIFO holds.
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
				defer cancel()
				_ = task.CloseIO(cctx, client.WithStdinCloser)
			}
		}()
	}
	if out != nil || errw != nil {
		err = followLog(followCtx, target.LogPath, writer(out), writer(errw), exited)
	} else {
		select {
		case <-exited:
		case <-ctx.Done():
		}
	}
	// Input copying ends with the client's stream, which the server closes
	// once Attach returns; it is not waited for.
	return err
}

// PortForward copies between stream and a TCP connection to port on the
// loopback of pod sandbox id's network namespace.
func (r *Runtime) PortForward(ctx context.Context, sandboxID string, port int32, stream io.ReadWriteCloser) error {
	ctx = r.ctx(ctx)
	defer stream.Close()
	if port <= 0 || port > 65535 {
		return fmt.Errorf("port forward: port %d: must be 1 to 65535: %w", port, errdefs.ErrInvalidArgument)
	}
	nsPath, err := r.PodNetNS(ctx, sandboxID)
	if err != nil {
		return err
	}
	conn, err := dialInNetNS(ctx, nsPath, port)
	if err != nil {
		return fmt.Errorf("port forward to %s port %d: %w", sandboxID, port, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The pod's side ended: the client's stream gets it all, then
		// its end.
		_, _ = io.Copy(stream, conn)
		stream.Close()
	}()
	_, _ = io.Copy(conn, stream)
	// The client's side ended: the pod's side reads EOF, and may still
	// answer.
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	<-done
	return nil
}

// dialInNetNS connects to port on the loopback of the network namespace at
// nsPath ("" for the host's), IPv4 first, then IPv6. A socket made inside
// a namespace stays in it, so only the dial runs there.
func dialInNetNS(ctx context.Context, nsPath string, port int32) (net.Conn, error) {
	dial := func() (net.Conn, error) {
		d := net.Dialer{Timeout: dialTimeout}
		p := strconv.Itoa(int(port))
		c, err4 := d.DialContext(ctx, "tcp4", net.JoinHostPort("127.0.0.1", p))
		if err4 == nil {
			return c, nil
		}
		c, err6 := d.DialContext(ctx, "tcp6", net.JoinHostPort("::1", p))
		if err6 == nil {
			return c, nil
		}
		return nil, err4
	}
	if nsPath == "" {
		return dial()
	}
	var conn net.Conn
	err := netns.Load(nsPath).Do(func() error {
		var err error
		conn, err = dial()
		return err
	})
	return conn, err
}

// openFIFOWriter opens the write end of a FIFO that the shim holds open
// for reading: without a reader it fails instead of blocking.
func openFIFOWriter(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil || st.Mode()&os.ModeNamedPipe == 0 {
		f.Close()
		return nil, fmt.Errorf("%s is not a FIFO: %w", path, errors.Join(err, errdefs.ErrFailedPrecondition))
	}
	// Blocking writes: the FIFO's back-pressure reaches the client.
	if err := unix.SetNonblock(int(f.Fd()), false); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func hasEnv(env []string, key string) bool {
	for _, e := range env {
		if len(e) > len(key) && e[:len(key)] == key && e[len(key)] == '=' {
			return true
		}
	}
	return false
}

// reader and writer turn a nil stream of the library's into a nil
// interface, which the client library reads as "not asked for".
func reader(r io.Reader) io.Reader {
	if r == nil {
		return nil
	}
	return r
}

func writer(w io.WriteCloser) io.Writer {
	if w == nil {
		return nil
	}
	return w
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
