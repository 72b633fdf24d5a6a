// Package shimlaunch starts the serving copy of berth-shim: the one process
// start of the bootstrap contract (package shimapi), shared by `berth-shim
// start`, which runs it and exits, and by berthd, which starts its spare
// shims with it directly rather than through `berth-shim start` (one Go
// process start instead of two; issue 15).
//
// Start creates the shim's socket in its folder, starts `berth-shim serve`
// detached (a new session, so no signal to its starter's process group or
// terminal reaches it; stdin, stdout and stderr on /dev/null; the folder as
// its working folder; the starter's environment, with GOMAXPROCS defaulted,
// so BERTH_TRACE reaches it too) handing it the listening socket and a
// readiness pipe, and waits until it serves. The serving copy opens its log
// and writes its pid file itself, and resets the oom_score_adj it inherits.
//
// The serving copy is the starter's child until the starter exits; then it
// is reparented (to init or a subreaper) and lives on, so the starter's
// death or restart never ends it. A starter that lives on must reap it
// once it exits (Process.Reap), or it stays a zombie.
package shimlaunch

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/internal/spantrace"
	"github.com/berthrt/berth/internal/unixsock"
	"github.com/berthrt/berth/shimapi"
)

// Descriptors the serving copy inherits.
const (
	// ListenerFD is the listening shim socket.
	ListenerFD = 3
	// ReadyFD is the write end of the readiness pipe: the serving copy
	// writes ReadyMessage and a newline on it once it serves, and closes it.
	ReadyFD = 4
	// DaemonFD is, for a spare, a pidfd of the daemon it exits with until
	// it is bound.
	DaemonFD = 5
)

// ReadyMessage is what the serving copy writes on the readiness pipe.
const ReadyMessage = "ready"

// MaxProcs is the shim's GOMAXPROCS unless the caller's environment sets
// one. The shim mostly waits on the runtime and on pipes; every P costs its
// own caches and GC work buffers, and more Ps mean more threads. Set in the
// environment of the serving copy, so that the Go runtime starts with one P,
// it keeps an idle shim 1.2 MiB anon instead of 1.7-2.2 MiB with two Ps (or
// 1.2-1.7 MiB when lowered only once serve runs), at no measurable cost in
// latency.
const MaxProcs = 1

// ProcsDefaultedEnv marks that Start set GOMAXPROCS for the serving copy
// rather than inheriting the caller's: serve then removes it again, so that
// the runtime it runs (runc, itself in Go) does not inherit it.
const ProcsDefaultedEnv = "BERTH_SHIM_GOMAXPROCS_DEFAULTED"

// Env is the environment Start gives the serving copy: the caller's, with
// GOMAXPROCS defaulted to MaxProcs.
func Env() []string {
	env := os.Environ()
	if _, ok := os.LookupEnv("GOMAXPROCS"); !ok {
		env = append(env, "GOMAXPROCS="+strconv.Itoa(MaxProcs), ProcsDefaultedEnv+"=1")
	}
	return env
}

// Config says which shim to start.
type Config struct {
	// Binary is the berth-shim binary (`berth-shim start` passes
	// /proc/self/exe).
	Binary string
	// Folder is where the shim serves: its socket (shimapi.SocketPath),
	// pid file and log, and its working folder. It must exist.
	Folder string
	// Args are serve's flags, after `berth-shim serve`.
	Args []string
	// Daemon is, for a spare, a pidfd of the daemon, inherited as
	// DaemonFD; nil otherwise.
	Daemon *os.File
	// Timeout bounds the wait until the shim serves; the shim is killed
	// after it.
	Timeout time.Duration
}

// Process is a serving shim that Start started.
type Process struct {
	p *os.Process
}

// Pid returns the shim's pid.
func (p *Process) Pid() int { return p.p.Pid }

// Release gives the shim up without reaping it, for a starter that exits
// at once (its shim is reparented).
func (p *Process) Release() { p.p.Release() }

// Reap waits in the background until the shim exits, and reaps it. The
// wait holds no thread: a pidfd of the shim, in the runtime's netpoller,
// becomes readable when it exits; only then is it waited for. Where there
// is no pidfd (Linux before 5.3) a goroutine waits in wait(2).
func (p *Process) Reap() {
	// The shim is our child and not reaped yet: its pid names it.
	fd, err := unix.PidfdOpen(p.p.Pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		go p.p.Wait()
		return
	}
	f := os.NewFile(uintptr(fd), "pidfd:"+strconv.Itoa(p.p.Pid))
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		go p.p.Wait()
		return
	}
	go func() {
		defer f.Close()
		// Look first, then let the poller wait for the next wake-up: it
		// is edge triggered, and an exit before the first wait would
		// otherwise be missed.
		rc.Read(func(fd uintptr) bool {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := unix.Poll(fds, 0)
			return err != nil || n > 0
		})
		p.p.Wait() // it has exited (or the pidfd failed: then this waits)
	}()
}

// Start creates the socket in cfg.Folder, starts the serving shim and
// waits until it serves. On failure nothing is left: the shim, if it was
// started, is killed and reaped, and the socket removed.
func Start(ctx context.Context, cfg Config) (*Process, error) {
	path := shimapi.SocketPath(cfg.Folder)
	lf, err := unixsock.ListenFile(path)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		os.Remove(path)
		return nil, err
	}
	defer readyR.Close()
	extra := []*os.File{lf, readyW} // ListenerFD, ReadyFD
	if cfg.Daemon != nil {
		extra = append(extra, cfg.Daemon) // DaemonFD
	}
	cmd := &exec.Cmd{
		Path: cfg.Binary,
		Args: append([]string{"berth-shim", "serve"}, cfg.Args...),
		Dir:  cfg.Folder,
		Env:  Env(),
		// Stdin, Stdout, Stderr nil: /dev/null, away from the caller.
		ExtraFiles:  extra,
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	span := spantrace.Start("fork serve")
	err = cmd.Start()
	readyW.Close()
	span.End()
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("start berth-shim serve: %w", err)
	}
	span = spantrace.Start("wait ready")
	defer span.End()
	p := cmd.Process

	got := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(readyR).ReadString('\n')
		got <- strings.TrimSpace(line)
	}()
	timeout := time.NewTimer(cfg.Timeout)
	defer timeout.Stop()
	var failure error
	select {
	case msg := <-got:
		if msg == ReadyMessage {
			return &Process{p: p}, nil
		}
		failure = errors.New("shim exited before serving")
	case <-timeout.C:
		failure = fmt.Errorf("shim did not serve within %v", cfg.Timeout)
	case <-ctx.Done():
		failure = fmt.Errorf("waiting for the shim to serve: %w", ctx.Err())
	}
	p.Kill()
	p.Wait()
	os.Remove(path)
	return nil, fmt.Errorf("%w%s", failure, LogTail(cfg.Folder))
}

// LogTail returns the end of the shim log in folder, to explain a failed
// start: "" or ": shim log: …".
func LogTail(folder string) string {
	data, err := os.ReadFile(filepath.Join(folder, shimapi.LogFileName))
	if err != nil || len(data) == 0 {
		return ""
	}
	if len(data) > 2048 {
		data = data[len(data)-2048:]
	}
	return ": shim log: " + strings.TrimSpace(string(data))
}
