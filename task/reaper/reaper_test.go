package reaper

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	runc "github.com/containerd/go-runc"
	"golang.org/x/sys/unix"
)

// reapTimeout bounds every wait for an exit, so that a reaper that loses
// one fails the test instead of hanging it.
const reapTimeout = 30 * time.Second

// TestReaper holds every test of a running reaper. Run makes the test
// process a child subreaper and reaps all its children, so exactly one
// reaper may run at a time, and only while these subtests run: tests
// elsewhere in the package that wait for their own children would lose
// them to it. Children here are started only through the reaper.
func TestReaper(t *testing.T) {
	r := startReaper(t)
	t.Run("ExitStatus", func(t *testing.T) { testReaperExitStatus(t, r) })
	t.Run("Killed", func(t *testing.T) { testReaperKilled(t, r) })
	t.Run("ConcurrentCommands", func(t *testing.T) { testReaperConcurrent(t, r) })
	t.Run("StartFailure", func(t *testing.T) { testReaperStartFailure(t, r) })
	t.Run("OrphanToSubscription", func(t *testing.T) { testReaperOrphan(t, r) })
	t.Run("UnsubscribeStopsDelivery", func(t *testing.T) { testReaperUnsubscribe(t, r) })
	t.Run("CancelEndsGroup", func(t *testing.T) { testReaperCancelEndsGroup(t, r) })
	t.Run("EndCommands", func(t *testing.T) { testReaperEndCommands(t, r) })

	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cmds) != 0 {
		t.Errorf("%d commands still registered after all were waited for", len(r.cmds))
	}
}

// startReaper runs a reaper until the test ends, then stops it and makes
// the test process an ordinary parent again.
func startReaper(t *testing.T) *Reaper {
	t.Helper()
	r := New()
	stop := make(chan struct{})
	if err := r.Run(stop); err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() {
		close(stop)
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0); err != nil {
			t.Errorf("clear child subreaper: %v", err)
		}
	})
	return r
}

// startCmd starts cmd through the reaper; if the test fails, cleanup kills
// it in case it still runs.
func startCmd(t *testing.T, r *Reaper, cmd *exec.Cmd) chan runc.Exit {
	t.Helper()
	ec, err := r.Start(cmd)
	if err != nil {
		t.Fatalf("Start %v: %v", cmd.Args, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			cmd.Process.Kill()
		}
	})
	return ec
}

// waitCmd is r.Wait with a timeout.
func waitCmd(t *testing.T, r *Reaper, cmd *exec.Cmd, ec chan runc.Exit) int {
	t.Helper()
	type result struct {
		status int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		status, err := r.Wait(cmd, ec)
		done <- result{status, err}
	}()
	select {
	case res := <-done:
		if res.err != nil {
			t.Fatalf("Wait %v: %v", cmd.Args, res.err)
		}
		return res.status
	case <-time.After(reapTimeout):
		t.Fatalf("no exit of %v (pid %d) within %v", cmd.Args, cmd.Process.Pid, reapTimeout)
		return 0
	}
}

func testReaperExitStatus(t *testing.T, r *Reaper) {
	tests := []struct {
		script string
		want   int
	}{
		{"exit 0", 0},
		{"exit 7", 7},
		{"exit 255", 255},
		{"kill -TERM $$", 128 + int(unix.SIGTERM)},
		{"kill -KILL $$", 137},
	}
	for _, tt := range tests {
		t.Run(tt.script, func(t *testing.T) {
			cmd := exec.Command("sh", "-c", tt.script)
			ec := startCmd(t, r, cmd)
			if got := waitCmd(t, r, cmd, ec); got != tt.want {
				t.Errorf("status = %d, want %d", got, tt.want)
			}
		})
	}
}

// testReaperKilled kills a running command from outside, as the shim does.
func testReaperKilled(t *testing.T, r *Reaper) {
	cmd := exec.Command("sleep", "60")
	ec := startCmd(t, r, cmd)
	if err := cmd.Process.Signal(unix.SIGKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
	if got := waitCmd(t, r, cmd, ec); got != 137 {
		t.Errorf("status = %d, want 137", got)
	}
}

// testReaperConcurrent starts many short commands at once, each with its
// own exit status, and checks that each gets its own exit back: none lost
// to the race between fork and registration, none delivered to another.
func testReaperConcurrent(t *testing.T, r *Reaper) {
	const n = 50
	sub := r.Subscribe()
	defer r.Unsubscribe(sub)

	var wg sync.WaitGroup
	statuses := make([]int, n)
	pids := make([]int, n)
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			// Half exit at once, to race the registration; half a little
			// later, to race each other's dispatch.
			script := fmt.Sprintf("exit %d", i)
			if i%2 == 1 {
				script = fmt.Sprintf("sleep 0.0%d; %s", i%5, script)
			}
			cmd := exec.Command("sh", "-c", script)
			ec, err := r.Start(cmd)
			if err != nil {
				errs <- fmt.Errorf("start %d: %w", i, err)
				return
			}
			pids[i] = cmd.Process.Pid
			select {
			case e := <-ec:
				if e.Pid != cmd.Process.Pid {
					errs <- fmt.Errorf("command %d (pid %d) got the exit of pid %d", i, cmd.Process.Pid, e.Pid)
				}
				statuses[i] = e.Status
				cmd.Wait() // fails with ECHILD: the reaper reaped it
			case <-time.After(reapTimeout):
				cmd.Process.Kill()
				errs <- fmt.Errorf("command %d (pid %d): no exit within %v", i, cmd.Process.Pid, reapTimeout)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i, s := range statuses {
		if s != i {
			t.Errorf("command %d: status %d, want %d", i, s, i)
		}
	}
	for _, e := range sub.Take() {
		if slices.Contains(pids, e.Pid) {
			t.Errorf("the exit of command pid %d also went to a subscription", e.Pid)
		}
	}
}

// testReaperStartFailure checks that a command that cannot start leaves no
// registration behind.
func testReaperStartFailure(t *testing.T, r *Reaper) {
	cmd := exec.Command(t.TempDir() + "/missing")
	if _, err := r.Start(cmd); err == nil {
		t.Fatal("Start of a missing binary succeeded")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cmds) != 0 {
		t.Errorf("%d commands registered after a failed start", len(r.cmds))
	}
}

// orphanScript starts a background shell that prints its pid, waits for
// fd 3 to reach EOF and exits 5; its parent exits 0 at once, so the
// background shell is orphaned and reparented to the nearest subreaper:
// the test process.
const orphanScript = `sh -c 'echo $$; read x <&3; exit 5' & exit 0`

// startOrphan runs orphanScript through r. It returns the orphan's pid and
// the pipe end whose closing lets the orphan exit.
func startOrphan(t *testing.T, r *Reaper) (pid int, release *os.File) {
	t.Helper()
	gate, release, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	out, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		release.Close()
		out.Close()
	})
	cmd := exec.Command("sh", "-c", orphanScript)
	cmd.Stdout = outW // an *os.File: Wait has no copy to wait for
	cmd.ExtraFiles = []*os.File{gate}
	ec := startCmd(t, r, cmd)
	gate.Close()
	outW.Close()

	if got := waitCmd(t, r, cmd, ec); got != 0 {
		t.Fatalf("parent shell: status %d, want 0", got)
	}
	out.SetReadDeadline(time.Now().Add(reapTimeout))
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("read the orphan's pid: %v", err)
	}
	if pid, err = strconv.Atoi(strings.TrimSpace(line)); err != nil {
		t.Fatalf("orphan pid %q: %v", line, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			unix.Kill(pid, unix.SIGKILL)
		}
	})
	if ppid := parentOf(t, pid); ppid != os.Getpid() {
		t.Fatalf("orphan %d has parent %d, want the test process %d", pid, ppid, os.Getpid())
	}
	return pid, release
}

// parentOf reads a process's parent pid from /proc.
func parentOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("stat of %d: %v", pid, err)
	}
	// pid (comm) state ppid ...; comm may hold spaces, so cut at the last ')'.
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	ppid, err := strconv.Atoi(fields[1])
	if err != nil {
		t.Fatalf("stat of %d: %q: %v", pid, b, err)
	}
	return ppid
}

// takeExit waits on sub for the exit of pid, ignoring others.
func takeExit(t *testing.T, sub *Subscription, pid int) runc.Exit {
	t.Helper()
	deadline := time.After(reapTimeout)
	for {
		for _, e := range sub.Take() {
			if e.Pid == pid {
				return e
			}
		}
		select {
		case <-sub.Ready():
		case <-deadline:
			t.Fatalf("no exit of pid %d on the subscription within %v", pid, reapTimeout)
		}
	}
}

func testReaperOrphan(t *testing.T, r *Reaper) {
	subs := []*Subscription{r.Subscribe(), r.Subscribe()}
	for _, s := range subs {
		t.Cleanup(func() { r.Unsubscribe(s) })
	}
	pid, release := startOrphan(t, r)

	for _, s := range subs {
		for _, e := range s.Take() {
			if e.Pid == pid {
				t.Fatalf("exit of pid %d delivered before it exited", pid)
			}
		}
	}
	before := time.Now()
	release.Close()
	for i, s := range subs {
		e := takeExit(t, s, pid)
		if e.Status != 5 {
			t.Errorf("subscription %d: status %d, want 5", i, e.Status)
		}
		if e.Timestamp.Before(before) {
			t.Errorf("subscription %d: timestamp %v before the exit", i, e.Timestamp)
		}
	}
}

func testReaperUnsubscribe(t *testing.T, r *Reaper) {
	gone, kept := r.Subscribe(), r.Subscribe()
	t.Cleanup(func() { r.Unsubscribe(kept) })
	r.Unsubscribe(gone)
	pid, release := startOrphan(t, r)
	release.Close()
	takeExit(t, kept, pid)
	select {
	case <-gone.Ready():
		t.Errorf("unsubscribed subscription signalled: %v", gone.Take())
	default:
	}
	if q := gone.Take(); len(q) != 0 {
		t.Errorf("unsubscribed subscription got %v", q)
	}
}

// startGroup starts, through the reaper, a shell that leads its own
// process group and starts a sleep in it; it returns the sleep's pid.
// Unless wait, the shell exits at once and leaves the sleep in the group.
func startGroup(t *testing.T, r *Reaper, ctx context.Context, wait bool) (*exec.Cmd, chan runc.Exit, int) {
	t.Helper()
	script := "sleep 60 >/dev/null & echo $!"
	if wait {
		script += "; wait"
	}
	cmd := exec.CommandContext(ctx, "sh", "-c", script)
	cmd.SysProcAttr = &unix.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	ec := startCmd(t, r, cmd)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("read the sleep's pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("sleep's pid %q: %v", line, err)
	}
	t.Cleanup(func() { unix.Kill(pid, unix.SIGKILL) })
	return cmd, ec, pid
}

// testReaperCancelEndsGroup: a command in its own process group whose
// context ends is killed with what it started.
func testReaperCancelEndsGroup(t *testing.T, r *Reaper) {
	sub := r.Subscribe()
	defer r.Unsubscribe(sub)
	ctx, cancel := context.WithCancel(context.Background())
	cmd, ec, sleep := startGroup(t, r, ctx, true)
	cancel()
	if got := waitCmd(t, r, cmd, ec); got != 137 {
		t.Errorf("command status = %d, want 137", got)
	}
	// Reparented to the test process, the subreaper, when the shell died.
	if e := takeExit(t, sub, sleep); e.Status != 137 {
		t.Errorf("the command's sleep exited %d, want 137 (killed with its group)", e.Status)
	}
}

// testReaperEndCommands: EndCommands kills every running command, with
// its group, and returns once they are reaped; a plain command too.
func testReaperEndCommands(t *testing.T, r *Reaper) {
	sub := r.Subscribe()
	defer r.Unsubscribe(sub)
	grouped, gec, sleep := startGroup(t, r, context.Background(), true)
	plain := exec.Command("sleep", "60")
	pec := startCmd(t, r, plain)
	if left := r.EndCommands(reapTimeout); len(left) != 0 {
		t.Fatalf("commands %v still running %v after EndCommands", left, reapTimeout)
	}
	if got := waitCmd(t, r, grouped, gec); got != 137 {
		t.Errorf("grouped command status = %d, want 137", got)
	}
	if got := waitCmd(t, r, plain, pec); got != 137 {
		t.Errorf("plain command status = %d, want 137", got)
	}
	if e := takeExit(t, sub, sleep); e.Status != 137 {
		t.Errorf("the grouped command's sleep exited %d, want 137", e.Status)
	}

	// Once a command has exited, what is left in its group (a container's
	// init, after runc create) is not its to end: the sleep here dies of
	// the test's SIGTERM, not of a SIGKILL sent before.
	exited, eec, rest := startGroup(t, r, context.Background(), false)
	if got := waitCmd(t, r, exited, eec); got != 0 {
		t.Fatalf("command status = %d, want 0", got)
	}
	if left := r.EndCommands(reapTimeout); len(left) != 0 {
		t.Fatalf("commands %v still running after EndCommands", left)
	}
	unix.Kill(rest, unix.SIGTERM)
	if e := takeExit(t, sub, rest); e.Status != 128+int(unix.SIGTERM) {
		t.Errorf("the sleep left in an exited command's group exited %d, want %d: EndCommands killed it", e.Status, 128+int(unix.SIGTERM))
	}
}
