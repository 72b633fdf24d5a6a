// Package daemon starts the long-lived processes of a benchmark (berthd,
// containerd, a docker-registry), waits until they serve, and stops them:
// each in its own process group, its output appended to a log file whose
// end explains a failure. A process may be killed and started again, for
// benchmarks that time a daemon's restart.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

const (
	// ReadyTimeout bounds how long a process may take to serve.
	ReadyTimeout = 30 * time.Second
	// stopGrace is how long a process may take to exit after SIGTERM
	// before it is killed.
	stopGrace = 10 * time.Second
	// pollInterval is how often WaitReady asks.
	pollInterval = 10 * time.Millisecond
)

// Process is one command, started once or again after each exit. It is
// owned by one goroutine; a goroutine per start waits for the exit.
type Process struct {
	Name string // for messages
	Log  string // path of the log file
	// Env is added to the benchmark's environment for the process; a
	// later entry of a name wins.
	Env []string

	args    []string      // the binary and its arguments
	cmd     *exec.Cmd     // the last start; nil before the first
	done    chan struct{} // closed when cmd has exited and was collected (and before the first start)
	cleanup []func() error
}

// New returns the process args[0] with args[1:], its output to be appended
// to log; it starts nothing.
func New(name, log string, args ...string) *Process {
	done := make(chan struct{})
	close(done)
	return &Process{Name: name, Log: log, args: args, done: done}
}

// Start starts args[0] with args[1:], its output appended to log, and
// returns once it runs; it does not wait for it to serve.
func Start(name, log string, args ...string) (*Process, error) {
	p := New(name, log, args...)
	if err := p.Start(); err != nil {
		return nil, err
	}
	return p, nil
}

// Start starts the command, for the first time or again once the last
// start has exited, and returns once it runs.
func (p *Process) Start() error {
	if !p.Exited() {
		return fmt.Errorf("%s runs already (pid %d)", p.Name, p.Pid())
	}
	f, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(f, "--- %s %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(p.args, " "))
	cmd := exec.Command(p.args[0], p.args[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	if p.Env != nil {
		cmd.Env = append(os.Environ(), p.Env...)
	}
	// Its own process group: a Ctrl-C on the terminal reaches only the
	// benchmark, which stops the process after it cleaned up through it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	go func() {
		cmd.Wait()
		close(done)
	}()
	return nil
}

// OnStop adds fn to what Stop runs after the process has exited, last
// added first.
func (p *Process) OnStop(fn func() error) { p.cleanup = append(p.cleanup, fn) }

// Pid is the process id of the last start, 0 before the first.
func (p *Process) Pid() int {
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Exited reports whether the last start has exited (true before the
// first).
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// WaitReady calls ready until it succeeds, the process exits, ctx ends or
// ReadyTimeout passes.
func (p *Process) WaitReady(ctx context.Context, ready func() error) error {
	deadline := time.Now().Add(ReadyTimeout)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return p.Failure("exited before it served")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollInterval):
		}
		if time.Now().After(deadline) {
			return p.Failure(fmt.Sprintf("did not serve within %v (%v)", ReadyTimeout, err))
		}
	}
}

// Kill sends SIGKILL and waits until the process is collected. Unlike
// Stop it runs no cleanup: the process may be started again.
func (p *Process) Kill() {
	if p.Exited() {
		return
	}
	p.cmd.Process.Kill()
	<-p.done
}

// Stop sends SIGTERM, kills after a grace period, then runs the cleanups
// of OnStop, once. A process that had to be killed is an error.
func (p *Process) Stop() error {
	var errs []error
	if !p.Exited() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(stopGrace):
			p.Kill()
			errs = append(errs, fmt.Errorf("%s did not stop within %v of SIGTERM; killed", p.Name, stopGrace))
		}
	}
	for i := len(p.cleanup) - 1; i >= 0; i-- {
		errs = append(errs, p.cleanup[i]())
	}
	p.cleanup = nil
	return errors.Join(errs...)
}

// Failure describes the process with the end of its log.
func (p *Process) Failure(what string) error {
	return errors.New(p.Name + " " + what + "; its log ends:\n" + Tail(p.Log, 12))
}

// Tail returns the last n lines of a file, indented.
func Tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "    (" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ")
}
