// Package daemon starts the long-lived processes of a benchmark (berthd,
// containerd, a docker-registry), waits until they serve, and stops them:
// each in its own process group, its output appended to a log file whose
// end explains a failure.
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

// Process is one started process. It is owned by one goroutine; a
// goroutine of its own waits for the exit.
type Process struct {
	Name string // for messages
	Log  string // path of the log file

	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd has exited and was collected
	cleanup []func() error
}

// Start starts args[0] with args[1:], its output appended to log, and
// returns once it runs; it does not wait for it to serve.
func Start(name, log string, args ...string) (*Process, error) {
	f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fmt.Fprintf(f, "--- %s %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(args, " "))
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group: a Ctrl-C on the terminal reaches only the
	// benchmark, which stops the process after it cleaned up through it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, Log: log, cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// OnStop adds fn to what Stop runs after the process has exited, last
// added first.
func (p *Process) OnStop(fn func() error) { p.cleanup = append(p.cleanup, fn) }

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

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

// Stop sends SIGTERM, kills after a grace period, then runs the cleanups
// of OnStop. A process that had to be killed is an error.
func (p *Process) Stop() error {
	var errs []error
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
		p.cmd.Process.Kill()
		<-p.done
		errs = append(errs, fmt.Errorf("%s did not stop within %v of SIGTERM; killed", p.Name, stopGrace))
	}
	for i := len(p.cleanup) - 1; i >= 0; i-- {
		errs = append(errs, p.cleanup[i]())
	}
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
