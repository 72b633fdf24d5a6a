// Package reaper owns wait4 for the whole shim process (see Reaper). It is
// its own package because it holds the process-wide state of a child
// subreaper: its tests must be the only ones in their test binary that
// reap children, and nothing else in the shim may call wait.
package reaper

import (
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"slices"
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
//
// A command started with SysProcAttr.Setpgid leads its own process group,
// and is ended together with that group: whatever it started (a runtime
// wrapper's runtime, a runtime's own helpers) dies with it. The group is
// signalled only while its leader is unreaped, so its id still names it;
// once the command has exited, what is left in the group (a container's
// init) is not the command's to end.
type Reaper struct {
	mu   sync.Mutex                 // held while dispatching and while a command starts
	cmds map[int]*command           // guarded by mu: started commands not yet reaped, by pid
	subs map[*Subscription]struct{} // guarded by mu
}

// command is a command started through the reaper.
type command struct {
	exit  chan runc.Exit // buffered, one exit
	group bool           // it leads its own process group
}

// New returns a reaper; Run must be called for it to reap.
func New() *Reaper {
	return &Reaper{cmds: make(map[int]*command), subs: make(map[*Subscription]struct{})}
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
	if c, ok := r.cmds[e.Pid]; ok {
		delete(r.cmds, e.Pid)
		c.exit <- e // buffered, one exit per command
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
// It implements runc.ProcessMonitor. When c's context ends, c is killed
// (with its group, see Reaper).
func (r *Reaper) Start(c *exec.Cmd) (chan runc.Exit, error) {
	group := c.SysProcAttr != nil && c.SysProcAttr.Setpgid
	if group {
		c.Cancel = func() error {
			r.mu.Lock()
			defer r.mu.Unlock()
			if cmd, ok := r.cmds[c.Process.Pid]; ok {
				r.killLocked(c.Process.Pid, cmd)
			}
			return nil
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := c.Start(); err != nil {
		return nil, err
	}
	cmd := &command{exit: make(chan runc.Exit, 1), group: group}
	r.cmds[c.Process.Pid] = cmd
	return cmd.exit, nil
}

// killLocked SIGKILLs the unreaped command pid, with its group if it
// leads one.
func (r *Reaper) killLocked(pid int, c *command) {
	if c.group {
		unix.Kill(-pid, unix.SIGKILL)
	}
	unix.Kill(pid, unix.SIGKILL)
}

// EndCommands kills every command still running (see Reaper) and waits up
// to limit until each is reaped; it returns the pids of those that were
// not. Run must be reaping meanwhile. A process that started commands
// calls it before it exits, so that none outlives it: an orphaned command
// would be reparented away and out of reach of whoever cleans up after
// the process.
func (r *Reaper) EndCommands(limit time.Duration) []int {
	r.mu.Lock()
	for pid, c := range r.cmds {
		r.killLocked(pid, c)
	}
	r.mu.Unlock()
	deadline := time.Now().Add(limit)
	for {
		r.mu.Lock()
		left := slices.Sorted(maps.Keys(r.cmds))
		r.mu.Unlock()
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(endPoll)
	}
}

// endPoll is how often EndCommands looks whether the killed commands are
// reaped; a SIGKILLed process exits as soon as it is scheduled.
const endPoll = 5 * time.Millisecond

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
