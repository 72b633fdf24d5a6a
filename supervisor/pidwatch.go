package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/internal/proc"
)

// pidPollInterval is how often a process is polled where the kernel has no
// pidfd (before Linux 5.3).
const pidPollInterval = 250 * time.Millisecond

// pidWatch tells when a process that is not our child exits. It holds a
// pidfd, which names the process itself rather than a reusable number, and
// which the kernel makes readable once the process has exited (a zombie
// counts). The runtime's netpoller waits on it, so no thread is held.
type pidWatch struct {
	pid    int
	pidfd  *os.File      // nil where pidfd_open is not supported
	exited chan struct{} // closed when the process has exited
	stop   chan struct{} // closed by close, to end the waiting goroutine
	once   sync.Once     // closes stop
}

// watchPid starts watching pid; the caller must call close. A process that
// is already gone yields a watch whose exited is closed.
func (s *Supervisor) watchPid(pid int) *pidWatch {
	w := &pidWatch{pid: pid, exited: make(chan struct{}), stop: make(chan struct{})}
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	switch {
	case errors.Is(err, unix.ESRCH):
		close(w.exited)
		return w
	case err == nil:
		w.pidfd = os.NewFile(uintptr(fd), fmt.Sprintf("pidfd:%d", pid))
	default:
		s.log.Debug("no pidfd, polling the shim pid", "pid", pid, "error", err)
	}
	if !s.goroutine(w.wait) {
		w.close()
	}
	return w
}

// wait closes exited when the process exits; it returns early when the
// watch is closed.
func (w *pidWatch) wait() {
	if w.pidfd != nil {
		rc, err := w.pidfd.SyscallConn()
		if err == nil {
			exited := false
			err = rc.Read(func(fd uintptr) bool {
				fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
				n, perr := unix.Poll(fds, 0)
				exited = perr == nil && n > 0
				return exited
			})
			if exited {
				close(w.exited)
				return
			}
			select {
			case <-w.stop:
				return
			default:
			}
		}
		// The descriptor cannot be polled: fall back to polling the pid.
	}
	t := time.NewTicker(pidPollInterval)
	defer t.Stop()
	for {
		if !proc.Alive(w.pid) {
			close(w.exited)
			return
		}
		select {
		case <-t.C:
		case <-w.stop:
			return
		}
	}
}

// close ends the watch; exited may then never be closed.
func (w *pidWatch) close() {
	w.once.Do(func() {
		close(w.stop)
		if w.pidfd != nil {
			w.pidfd.Close() // ends a Read blocked in the netpoller
		}
	})
}

// kill sends sig to the watched process, through the pidfd where there is
// one, so a reused pid is never hit.
func (w *pidWatch) kill(sig unix.Signal) error {
	if w.pidfd != nil {
		rc, err := w.pidfd.SyscallConn()
		if err != nil {
			return err
		}
		var kerr error
		if err := rc.Control(func(fd uintptr) { kerr = unix.PidfdSendSignal(int(fd), sig, nil, 0) }); err != nil {
			return err
		}
		return kerr
	}
	return unix.Kill(w.pid, sig)
}

// waitExit waits until the process exited, d passed or ctx ended; it
// reports whether the process exited.
func (w *pidWatch) waitExit(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.exited:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}
