// Package reaper owns wait4 for the whole shim process (see Reaper). It is
// its own package because it holds the process-wide state of a child
// subreaper: its tests must be the only ones in their test binary that
// reap children, and nothing else in the shim may call wait.
package reaper

import (
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"time"

	runc "github.com/containerd/go-runc"
	"golang.org/x/sys/unix"
)

// Reaper owns wait4 for the whole shim process: it is the only code that
// reaps children. Exits of commands started through it (the runtime's
// invocations, via go-runc's ProcessMonitor) go to the command's own
// channel; every other exit (container processes, reparented to the shim as
// child subreaper) goes to all subscriptions.
//
// An exit is never lost to the classic race: Start holds mu from fork until
// the pid is registered, and the reaping goroutine dispatches under mu, so a
// command that exits at once still finds its channel; subscriptions queue
// without bound, so dispatching never waits for a slow subscriber.
type Reaper struct {
	mu   sync.Mutex                 // held while dispatching and while a command starts
	cmds map[int]chan runc.Exit     // guarded by mu: started commands by pid
	subs map[*Subscription]struct{} // guarded by mu
}

// New returns a reaper; Run must be called for it to reap.
func New() *Reaper {
	return &Reaper{cmds: make(map[int]chan runc.Exit), subs: make(map[*Subscription]struct{})}
}

// Run makes the calling process a child subreaper and reaps children until
// stop is closed. It owns SIGCHLD.
func (r *Reaper) Run(stop <-chan struct{}) error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return os.NewSyscallError("prctl(PR_SET_CHILD_SUBREAPER)", err)
	}
	sigc := make(chan os.Signal, 32)
	signal.Notify(sigc, unix.SIGCHLD)
	go func() {
		defer signal.Stop(sigc)
		for {
			r.reap()
			select {
			case <-sigc:
			case <-stop:
				return
			}
		}
	}()
	return nil
}

// reap collects every exited child and dispatches its exit.
func (r *Reaper) reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		r.dispatch(runc.Exit{Pid: pid, Status: exitCode(ws), Timestamp: time.Now()})
	}
}

func (r *Reaper) dispatch(e runc.Exit) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ch, ok := r.cmds[e.Pid]; ok {
		delete(r.cmds, e.Pid)
		ch <- e // buffered, one exit per command
		return
	}
	for s := range r.subs {
		s.push(e)
	}
}

// exitCode is the shell's convention: the exit code, or 128+signal.
func exitCode(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// Start starts c and returns the channel its exit will arrive on.
// It implements runc.ProcessMonitor.
func (r *Reaper) Start(c *exec.Cmd) (chan runc.Exit, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := c.Start(); err != nil {
		return nil, err
	}
	ch := make(chan runc.Exit, 1)
	r.cmds[c.Process.Pid] = ch
	return ch, nil
}

// StartLocked is Start; the shim never sets a parent-death signal on the
// runtime, so there is no thread to lock.
func (r *Reaper) StartLocked(c *exec.Cmd) (chan runc.Exit, error) { return r.Start(c) }

// Wait waits for c's exit on ec and returns its status. It then lets
// exec.Cmd finish copying the command's output; Cmd.Wait's own wait fails
// harmlessly because the reaper reaped the process already.
func (r *Reaper) Wait(c *exec.Cmd, ec chan runc.Exit) (int, error) {
	e := <-ec
	c.Wait()
	return e.Status, nil
}

// Subscription receives the exits of processes not started through the
// reaper, in order.
type Subscription struct {
	mu     sync.Mutex
	queue  []runc.Exit // guarded by mu
	notify chan struct{}
}

// Subscribe returns a subscription to exits; Unsubscribe ends it.
func (r *Reaper) Subscribe() *Subscription {
	s := &Subscription{notify: make(chan struct{}, 1)}
	r.mu.Lock()
	r.subs[s] = struct{}{}
	r.mu.Unlock()
	return s
}

// Unsubscribe stops delivery to s.
func (r *Reaper) Unsubscribe(s *Subscription) {
	r.mu.Lock()
	delete(r.subs, s)
	r.mu.Unlock()
}

func (s *Subscription) push(e runc.Exit) {
	s.mu.Lock()
	s.queue = append(s.queue, e)
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Ready is signalled when exits may be waiting; Take returns them.
func (s *Subscription) Ready() <-chan struct{} { return s.notify }

// Take returns and forgets the queued exits.
func (s *Subscription) Take() []runc.Exit {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queue
	s.queue = nil
	return q
}
