package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

const (
	// readyTimeout bounds how long a daemon may take to serve after it was
	// started, with every container of the run restored.
	readyTimeout = 30 * time.Second
	// stopGrace is how long a daemon may take to exit after SIGTERM before
	// it is killed.
	stopGrace = 10 * time.Second
	// pollInterval is how often readiness is polled: short against the
	// goals (100 ms), long enough not to steal a core from the daemon.
	pollInterval = time.Millisecond
)

// daemon is one long-lived process the benchmark starts: berthd or
// containerd, with its output appended to a log file. It is owned by the
// main goroutine; a goroutine per started process waits for its exit.
type daemon struct {
	name string   // for messages: "berthd", "containerd"
	args []string // the binary and its arguments
	log  string   // path of the log file

	cmd  *exec.Cmd     // nil when not started or collected
	done chan struct{} // closed when cmd has exited and was collected
}

// start starts the process and returns when it runs; it does not wait for
// it to serve.
func (d *daemon) start() error {
	if d.cmd != nil {
		return fmt.Errorf("%s runs already (pid %d)", d.name, d.cmd.Process.Pid)
	}
	logf, err := os.OpenFile(d.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "--- %s %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(d.args, " "))
	cmd := exec.Command(d.args[0], d.args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a Ctrl-C on the terminal reaches only the
	// benchmark, which stops the daemon after it cleaned up through it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", d.name, err)
	}
	d.cmd, d.done = cmd, make(chan struct{})
	go func(done chan struct{}) {
		cmd.Wait()
		close(done)
	}(d.done)
	return nil
}

// pid returns the process id, 0 when none runs.
func (d *daemon) pid() int {
	if d.cmd == nil {
		return 0
	}
	return d.cmd.Process.Pid
}

// exited reports whether the started process has exited by itself.
func (d *daemon) exited() bool {
	if d.cmd == nil {
		return true
	}
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits until the process is collected.
func (d *daemon) kill() error {
	if d.cmd == nil {
		return nil
	}
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
	d.cmd = nil
	return nil
}

// stop sends SIGTERM, waits up to stopGrace, then kills.
func (d *daemon) stop() error {
	if d.cmd == nil {
		return nil
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		d.cmd = nil
		return nil
	case <-time.After(stopGrace):
	}
	d.kill()
	return fmt.Errorf("%s did not stop within %v of SIGTERM; killed", d.name, stopGrace)
}

// failure describes a daemon that exited or never served, with the end of
// its log.
func (d *daemon) failure(what string) error {
	return errors.New(what + ": " + d.name + " log ends:\n" + tail(d.log, 12))
}

// tail returns the last n lines of a file, indented.
func tail(path string, n int) string {
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
