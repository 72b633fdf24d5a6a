package task

import (
	"context"
	"sync"
	"time"

	"github.com/berthrt/berth/io/stdio"
)

// outputDrainTimeout bounds how long an exit waits for the process's output
// to be copied before it is reported. A process that left a child holding
// its stdout open never drains.
const outputDrainTimeout = 2 * time.Second

// actions are what differs between the init process and an exec process:
// the runtime calls behind each transition. They run with the process's mu
// held, so they must not wait for an exit to be handled.
type actions interface {
	start(ctx context.Context, p *process) (pid int, early *exitInfo, err error)
	pause(ctx context.Context) error
	resume(ctx context.Context) error
	kill(ctx context.Context, p *process, sig int, all bool) error
	delete(ctx context.Context, p *process) error
}

// exitInfo is how a process ended.
type exitInfo struct {
	status int
	at     time.Time
}

// process is one process of the container, init or exec, driven through the
// state machine of state.go. Every transition takes mu, so the runtime call
// behind one runs alone for this process.
type process struct {
	name string // "init" or the exec id, for messages
	id   string // exec id; empty for init
	act  actions
	io   *stdio.IO
	spec []byte // exec: the OCI Process, JSON

	mu     sync.Mutex
	status Status   // guarded by mu
	pid    int      // guarded by mu; 0 until known
	exit   exitInfo // guarded by mu; valid from Stopped on

	done     chan struct{} // closed once exited and the output is delivered
	doneOnce sync.Once
}

func newProcess(id string, act actions, io *stdio.IO) *process {
	name := id
	if id == "" {
		name = "init"
	}
	return &process{name: name, id: id, act: act, io: io, done: make(chan struct{})}
}

func (p *process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}

func (p *process) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// snapshot returns pid, status and exit together.
func (p *process) snapshot() (int, Status, exitInfo) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid, p.status, p.exit
}

// do runs one transition: checks op against the state, runs fn, and moves
// to the next state when fn succeeds.
func (p *process) do(op Op, fn func() error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.doLocked(op, fn)
}

func (p *process) doLocked(op Op, fn func() error) error {
	to, err := next(p.name, p.status, op)
	if err != nil {
		return err
	}
	if fn != nil {
		if err := fn(); err != nil {
			return err
		}
	}
	p.status = to
	return nil
}

// start runs the process. An exit that happened before start returned is
// applied at once, after the move to Running, and returned: the caller must
// then report it (Service.exitRecorded), since no exit handler will.
func (p *process) start(ctx context.Context) (int, *exitInfo, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var early *exitInfo
	err := p.doLocked(OpStart, func() error {
		pid, e, err := p.act.start(ctx, p)
		if err != nil {
			return err
		}
		if pid != 0 {
			p.pid = pid
		}
		early = e
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	if early != nil && !p.exitedLocked(*early) {
		early = nil
	}
	return p.pid, early, nil
}

func (p *process) kill(ctx context.Context, sig int, all bool) error {
	return p.do(OpKill, func() error { return p.act.kill(ctx, p, sig, all) })
}

func (p *process) pause(ctx context.Context) error {
	return p.do(OpPause, func() error { return p.act.pause(ctx) })
}

func (p *process) resume(ctx context.Context) error {
	return p.do(OpResume, func() error { return p.act.resume(ctx) })
}

// delete removes the process; it returns how it exited (zero for a process
// that never ran).
func (p *process) delete(ctx context.Context) (int, exitInfo, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	from := p.status
	err := p.doLocked(OpDelete, func() error { return p.act.delete(ctx, p) })
	if err != nil {
		return 0, exitInfo{}, err
	}
	if p.io != nil {
		p.io.Close()
	}
	if from != Stopped {
		// It never ran (or never got to exit through the state machine):
		// release the waiters with what is known.
		p.exit.at = time.Now()
		p.doneOnce.Do(func() { close(p.done) })
	}
	return p.pid, p.exit, nil
}

// exited records the process's exit. It reports false when the process had
// stopped already.
func (p *process) exited(e exitInfo) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitedLocked(e)
}

func (p *process) exitedLocked(e exitInfo) bool {
	if err := p.doLocked(OpExit, nil); err != nil {
		return false
	}
	p.exit = e
	return true
}

// finish ends the stdin of the exited process (a client still writing
// gets EPIPE rather than blocking), delivers the remaining output, then
// releases the waiters.
func (p *process) finish() {
	if p.io != nil {
		p.io.EndStdin()
		p.io.WaitOutput(outputDrainTimeout)
	}
	p.doneOnce.Do(func() { close(p.done) })
}

// wait blocks until the process exited (and its output was delivered) or
// ctx ends.
func (p *process) wait(ctx context.Context) (exitInfo, error) {
	select {
	case <-p.done:
	case <-ctx.Done():
		return exitInfo{}, ctx.Err()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exit, nil
}
