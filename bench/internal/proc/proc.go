// Package proc holds the process plumbing of berth's benchmarks: bounded
// commands in their own process group, waiting for and reaping processes
// (also those reparented to a child subreaper), reading a process's memory
// from /proc, and the benchmark's own exit code.
package proc

import (
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
)

const (
	// CommandTimeout bounds one command, so that a hung runtime or daemon
	// ends a benchmark instead of blocking it forever.
	CommandTimeout = 60 * time.Second
	// reapGrace is how long a process may take to exit by itself before it
	// is killed.
	reapGrace = 2 * time.Second
	// killGrace is how long a killed process may take to disappear.
	killGrace = 5 * time.Second
)

// Command returns a command bounded by CommandTimeout, in its own process
// group so that a Ctrl-C on the terminal reaches only the benchmark, which
// then cleans up, and not a runtime halfway through a create.
func Command(name string, args ...string) (*exec.Cmd, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), CommandTimeout)
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = time.Second
	return cmd, cancel
}

// LookPath finds a binary given as a path (with a slash) or a name in PATH
// and returns its absolute path.
func LookPath(name string) (string, error) {
	if !strings.Contains(name, "/") {
		return exec.LookPath(name)
	}
	abs, err := filepath.Abs(name)
	if err != nil {
		return "", err
	}
	if st, err := os.Stat(abs); err != nil {
		return "", err
	} else if st.IsDir() || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%s: not an executable", abs)
	}
	return abs, nil
}

// Run runs a command whose output only matters to explain a failure.
func Run(name string, args ...string) error {
	_, err := Output(name, args...)
	return err
}

// Output runs a command and returns its standard output and error
// together; on failure the error quotes them.
func Output(name string, args ...string) ([]byte, error) {
	cmd, cancel := Command(name, args...)
	defer cancel()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// SetSubreaper makes this process a child subreaper (on) or not: while it
// is one, a process orphaned below it (runc's detached init, a shim that
// re-executed itself) becomes its child instead of init's.
func SetSubreaper(on bool) error {
	v := 0
	if on {
		v = 1
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, uintptr(v), 0, 0, 0); err != nil {
		return fmt.Errorf("child subreaper %v: %w", on, err)
	}
	return nil
}

// Reap waits for pid to exit and collects it: by itself within a short
// grace, or after SIGKILL. A pid that is not a child of this process
// counts as gone once it no longer exists.
func Reap(pid int) error {
	deadline := time.Now().Add(reapGrace)
	killed := false
	for {
		gone, err := Exited(pid)
		if err != nil || gone {
			return err
		}
		if time.Now().After(deadline) {
			if killed {
				return fmt.Errorf("pid %d survives SIGKILL", pid)
			}
			if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("kill %d: %w", pid, err)
			}
			killed, deadline = true, time.Now().Add(killGrace)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Exited reports whether pid has exited, collecting it when it is a child.
// A zombie that is no child of ours counts as exited.
func Exited(pid int) (bool, error) {
	var ws unix.WaitStatus
	wpid, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
	switch {
	case err == nil:
		return wpid == pid, nil
	case errors.Is(err, unix.EINTR):
		return false, nil
	case errors.Is(err, unix.ECHILD):
		return !Alive(pid), nil
	default:
		return false, fmt.Errorf("wait4 %d: %w", pid, err)
	}
}

// Alive reports whether pid exists and is not a zombie.
func Alive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses and may
	// itself hold spaces and parentheses.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

// WaitExit blocks until pid, a child of this process, exits and returns
// its exit code (128+signal when killed).
func WaitExit(pid int) (int, error) {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("wait4 %d: %w", pid, err)
		}
		if ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ws.ExitStatus(), nil
	}
}

// ReapZombies collects every exited child: processes reparented to a
// subreaper whose pid the benchmark never learned. Call it only when no
// exec.Cmd is running, or it may collect that command's process.
func ReapZombies() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
	}
}

// ReadPid reads a pid file.
func ReadPid(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: bad content %q", path, data)
	}
	return pid, nil
}

// Matching returns the pids of live processes whose command line holds
// every one of words as a separate argument: how a cleanup finds what a
// benchmark started but never learned the pid of (a shim of a namespace
// unique to the run).
func Matching(words ...string) []int {
	entries, _ := os.ReadDir("/proc")
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if args := Args(pid); len(args) > 0 && containsAll(args, words) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Args returns the command line of process pid, or nil when it is gone.
func Args(pid int) []string {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || len(data) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
}

func containsAll(args, words []string) bool {
	for _, w := range words {
		found := false
		for _, a := range args {
			if a == w {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
