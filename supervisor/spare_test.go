package supervisor_test

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/proc"
	"github.com/berthrt/berth/shimapi"
	"github.com/berthrt/berth/supervisor"
)

// spares returns the pids of the spare shims serving in the state
// folder's spare folders.
func (e *env) spares(t *testing.T) []int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(e.stateDir, ".spare", "*", shimapi.PidFileName))
	var pids []int
	for _, f := range files {
		if pid, err := shimapi.ReadPidFile(filepath.Dir(f)); err == nil && proc.Alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// readySpare waits until the one spare of s is in its pool and returns its
// pid.
func (e *env) readySpare(t *testing.T, s *supervisor.Supervisor) int {
	t.Helper()
	eventually(t, time.Minute, "no spare shim ready", func() bool { return supervisor.SparesReady(s) == 1 })
	pids := e.spares(t)
	if len(pids) != 1 {
		t.Fatalf("spare shims serving: %v, want one", pids)
	}
	return pids[0]
}

func withSpares(n int) func(*supervisor.Config) {
	return func(c *supervisor.Config) { c.SpareShims = n }
}

func TestSpareShimServesCreate(t *testing.T) {
	e := newEnv(t, "sv-spare")
	rec := newRecorder()
	s := e.supervisor(rec, withSpares(1))
	if err := s.Restore(ctx(t)); err != nil {
		t.Fatal(err)
	}
	spare := e.readySpare(t, s)

	sh := e.create(s, "one", "sh", "-c", "exit 7")
	if got := shimPid(t, sh); got != spare {
		t.Fatalf("task's shim is pid %d, want the spare %d", got, spare)
	}
	// The spare's folder is the bundle now, with the shim's files in it.
	for _, name := range []string{shimapi.SocketName, shimapi.PidFileName, "config.json"} {
		if _, err := os.Stat(filepath.Join(e.bundle("one"), name)); err != nil {
			t.Errorf("bundle of a bound spare: %v", err)
		}
	}
	start(t, sh)
	if got := wait(t, sh); got != 7 {
		t.Fatalf("exit %d, want 7", got)
	}
	// A new spare replaces the one taken.
	eventually(t, time.Minute, "no new spare after one was taken", func() bool {
		pids := e.spares(t)
		return len(pids) == 1 && pids[0] != spare
	})
	if _, err := s.Delete(ctx(t), e.ns, "one"); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "bound spare still runs after delete", func() bool { return !proc.Alive(spare) })
	if n := rec.count(e.ns, "one", "/tasks/exit"); n != 1 {
		t.Errorf("%d exit events, want 1 (topics %v)", n, rec.topics(e.ns, "one"))
	}

	left := e.spares(t)
	s.Close()
	for _, pid := range left {
		eventually(t, time.Minute, "idle spare still runs after Close", func() bool { return !proc.Alive(pid) })
	}
	if entries, _ := os.ReadDir(filepath.Join(e.stateDir, ".spare")); len(entries) > 0 {
		t.Errorf("spare folders left after Close: %d", len(entries))
	}
}

func TestSpareCreateFailureCleansUp(t *testing.T) {
	e := newEnv(t, "sv-sparefail")
	s := e.supervisor(newRecorder(), withSpares(1))
	if err := s.Restore(ctx(t)); err != nil {
		t.Fatal(err)
	}
	spare := e.readySpare(t, s)
	opts := e.opts("bad", "true")
	opts.Rootfs = []*shimapi.Mount{{Type: "nosuchfs", Source: "none"}}
	if _, err := s.Create(ctx(t), e.ns, "bad", opts); err == nil {
		t.Fatal("create with a bad rootfs succeeded")
	}
	if _, err := os.Stat(e.bundle("bad")); !os.IsNotExist(err) {
		t.Fatalf("bundle after failed create: %v", err)
	}
	eventually(t, time.Minute, "the spare bound to the failed task still runs", func() bool { return !proc.Alive(spare) })
	if _, err := s.Get(e.ns, "bad"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Get after failed create: %v", err)
	}
}

func TestSpareExitsWithItsDaemon(t *testing.T) {
	e := newEnv(t, "sv-sparedaemon")
	dir := filepath.Join(e.stateDir, ".spare", "x")
	if err := os.MkdirAll(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	// The shell is the spare's daemon: it exits once start has.
	out, err := exec.Command("sh", "-c", strconv.Quote(e.shim)+" start --spare --bundle "+dir).CombinedOutput()
	if err != nil {
		t.Fatalf("berth-shim start --spare: %v: %s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != shimapi.SocketPath(dir) {
		t.Fatalf("start printed %q", got)
	}
	// The spare may be gone, pid file and all, by now: its log says who it
	// was.
	pid := loggedPid(t, dir)
	t.Cleanup(func() {
		if proc.Alive(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	eventually(t, time.Minute, "spare outlived the process that started it", func() bool { return !proc.Alive(pid) })
}

func TestSpareStartRefusesADeadParent(t *testing.T) {
	e := newEnv(t, "sv-spareorphan")
	dir := filepath.Join(e.stateDir, ".spare", "y")
	if err := os.MkdirAll(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	// Pid 1 is not start's parent: as when the daemon that ran start died
	// before start got going and start was reparented.
	out, err := exec.Command(e.shim, "start", "--spare", "--bundle", dir, "--parent-pid", "1").CombinedOutput()
	if err == nil {
		t.Fatalf("start --spare for a caller that is not its parent succeeded: %s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, shimapi.PidFileName)); !os.IsNotExist(err) {
		t.Fatalf("a spare was started anyway: %v", err)
	}
}

func TestRestoreRemovesStaleSpareFolders(t *testing.T) {
	e := newEnv(t, "sv-sparestale")
	dir := filepath.Join(e.stateDir, ".spare", "old")
	if err := os.MkdirAll(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	// A pid file naming a process that is no shim must not get it killed.
	if err := os.WriteFile(filepath.Join(dir, shimapi.PidFileName), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		t.Fatal(err)
	}
	s := e.supervisor(newRecorder())
	if err := s.Restore(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("stale spare folder after restore: %v", err)
	}
}

// loggedPid returns the pid of the shim whose log is in dir, from its
// "serving" line, which it writes just after it said it serves.
func loggedPid(t *testing.T, dir string) int {
	t.Helper()
	pid := 0
	eventually(t, time.Minute, "no serving line with a pid in the shim log", func() bool {
		data, _ := os.ReadFile(filepath.Join(dir, shimapi.LogFileName))
		for _, line := range strings.Split(string(data), "\n") {
			var l struct {
				Msg string
				Pid int
			}
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "serving" && l.Pid > 0 {
				pid = l.Pid
			}
		}
		return pid != 0
	})
	return pid
}

// isChild reports whether pid is a child of this process (a zombie, not
// reaped yet, is one too).
func isChild(pid int) bool { return slices.Contains(proc.Children(os.Getpid()), pid) }

// TestSpareIsStartedWithOneExec: the supervisor starts a spare's serving
// shim itself, so the spare is its child (through `berth-shim start`,
// which exits once the spare serves, the spare would be reparented: two
// process starts instead of one), in a session of its own, and the
// supervisor reaps it when it exits, idle or bound: no zombie is left.
func TestSpareIsStartedWithOneExec(t *testing.T) {
	e := newEnv(t, "sv-spareexec")
	s := e.supervisor(newRecorder(), withSpares(1))
	if err := s.Restore(ctx(t)); err != nil {
		t.Fatal(err)
	}
	spare := e.readySpare(t, s)
	if !isChild(spare) {
		t.Fatalf("spare %d is no child of the supervisor's process %d: started through another process", spare, os.Getpid())
	}
	if sid, err := unix.Getsid(spare); err != nil || sid != spare {
		t.Fatalf("spare %d in session %d (%v), want a session of its own", spare, sid, err)
	}

	sh := e.create(s, "one", "true")
	bound := shimPid(t, sh)
	if bound != spare {
		t.Fatalf("task's shim is pid %d, want the spare %d", bound, spare)
	}
	start(t, sh)
	if got := wait(t, sh); got != 0 {
		t.Fatalf("exit %d, want 0", got)
	}
	if _, err := s.Delete(ctx(t), e.ns, "one"); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "bound spare not reaped after its task's delete", func() bool { return !isChild(bound) })

	// Closed: the idle spare is shut down and reaped.
	eventually(t, time.Minute, "no new spare after one was taken", func() bool {
		pids := e.spares(t)
		return len(pids) == 1 && pids[0] != spare
	})
	idle := e.spares(t)[0]
	if !isChild(idle) {
		t.Fatalf("new spare %d is no child of ours", idle)
	}
	s.Close()
	eventually(t, time.Minute, "idle spare not reaped after Close", func() bool { return !isChild(idle) })
}

// spareFolders returns the names of the folders under the state folder's
// spare folder: fillSpares makes one first when it starts a spare.
func (e *env) spareFolders(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(e.stateDir, ".spare"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, en := range entries {
		names = append(names, en.Name())
	}
	return names
}

// assertNoSpareUntil checks, every 10ms until end, that no spare is
// started: no folder under .spare, no spare shim, none in the pool. The
// caller's end is when a spare may come at the earliest; a host so slow
// that end passed before the check began leaves it unmade, and says so.
func (e *env) assertNoSpareUntil(t *testing.T, s *supervisor.Supervisor, end time.Time, why string) {
	t.Helper()
	if !time.Now().Before(end) {
		t.Logf("%s: no check: the time a spare may come passed %v ago", why, time.Since(end))
		return
	}
	for ; time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if dirs, pids, ready := e.spareFolders(t), e.spares(t), supervisor.SparesReady(s); len(dirs) > 0 || len(pids) > 0 || ready > 0 {
			t.Fatalf("%s: spare folders %v, spare shims %v, %d in the pool", why, dirs, pids, ready)
		}
	}
}

// spareTaken returns a supervisor with a pool of one spare, refill delay
// delay and, when given, afterDelete as the refill delay after a task's
// delete, whose task "one" took the spare, that spare's pid, and a time
// before the take (the refill delay runs from the take).
func spareTaken(t *testing.T, ns string, delay time.Duration, afterDelete ...time.Duration) (*env, *supervisor.Supervisor, int, time.Time) {
	t.Helper()
	e := newEnv(t, ns)
	s := e.supervisor(newRecorder(), withSpares(1))
	supervisor.SetSpareRefillDelay(s, delay)
	for _, d := range afterDelete {
		supervisor.SetSpareRefillAfterDelete(s, d)
	}
	if err := s.Restore(ctx(t)); err != nil {
		t.Fatal(err)
	}
	spare := e.readySpare(t, s)
	taken := time.Now()
	if got := shimPid(t, e.create(s, "one", "true")); got != spare {
		t.Fatalf("task one's shim is pid %d, want the spare %d", got, spare)
	}
	return e, s, spare, taken
}

// TestSpareRefillIsDelayed: the spare taken by a Create is replaced only
// after the refill delay, not while the task it went to runs on.
func TestSpareRefillIsDelayed(t *testing.T) {
	// Far shorter than the wait after the check.
	const delay = time.Second
	e, s, _, taken := spareTaken(t, "sv-sparedelay", delay)
	e.assertNoSpareUntil(t, s, taken.Add(delay), "within the refill delay")
	e.readySpare(t, s)
}

// TestSpareRefillAtOnceWhenPoolEmpty: a Create that finds the pool empty
// while a refill waits out its delay has the pool refilled at once.
func TestSpareRefillAtOnceWhenPoolEmpty(t *testing.T) {
	// Longer than the test: the refill after "one" never comes by itself.
	e, s, spare, _ := spareTaken(t, "sv-spareempty", time.Hour)
	if n := supervisor.SparesReady(s); n != 0 {
		t.Fatalf("%d spares ready after the one spare was taken, refill delayed by an hour", n)
	}
	two := shimPid(t, e.create(s, "two", "true"))
	if two == spare {
		t.Fatalf("task two got the spare %d that task one has", spare)
	}
	if got := e.readySpare(t, s); got == two {
		t.Fatalf("the spare ready is task two's shim %d", two)
	}
}

// TestCloseStopsDelayedRefill: a refill still waiting out its delay when
// the supervisor closes starts no spare, then or later.
func TestCloseStopsDelayedRefill(t *testing.T) {
	// Shorter than the check after Close, so that the refill would have
	// come within it; long enough that the Create that took the spare,
	// and Close, come before it even on a loaded host.
	const delay = time.Second
	e, s, _, taken := spareTaken(t, "sv-spareclose", delay)
	s.Close()
	if closed := time.Since(taken); closed >= delay {
		// The refill may have run before Close: nothing to check.
		t.Logf("no check: Close came %v after the take, past the refill delay (%v)", closed, delay)
		return
	}
	e.assertNoSpareUntil(t, s, taken.Add(3*delay), "after Close")
}

// TestSpareRefillSoonAfterDelete: the delete of a task cuts the delay of
// a refill short, to spareRefillAfterDelete: the run that took the spare
// is over, and a loop of short runs finds the pool full again; but not
// to nothing, so that the spare's start leaves the client's last calls
// alone.
func TestSpareRefillSoonAfterDelete(t *testing.T) {
	// Longer than the test: the refill after "one" never comes by itself.
	const afterDelete = 400 * time.Millisecond
	e, s, spare, _ := spareTaken(t, "sv-sparedelete", time.Hour, afterDelete)
	if n := supervisor.SparesReady(s); n != 0 {
		t.Fatalf("%d spares ready after the one spare was taken, refill delayed by an hour", n)
	}
	deleting := time.Now()
	if _, err := s.Delete(ctx(t), e.ns, "one"); err != nil {
		t.Fatal(err)
	}
	e.assertNoSpareUntil(t, s, deleting.Add(afterDelete), "within the delay after the delete")
	if got := e.readySpare(t, s); got == spare {
		t.Fatalf("the spare ready is task one's shim %d", spare)
	}
}
