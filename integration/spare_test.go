package integration

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/internal/proc"
	tasksv1 "github.com/berthrt/berth/proto/tasks/v1"
	"github.com/berthrt/berth/shimapi"
)

// TestSpareExitsWhenBerthdIsKilled: the spare shims berthd keeps ready hold
// no container, so they must not outlive it: after a SIGKILL of berthd
// every spare exits by itself (one was once seen living on after its test
// daemon was gone).
func TestSpareExitsWhenBerthdIsKilled(t *testing.T) {
	d := newDaemon(t, withRuntimeConfig("spare_shims = 2\n"))
	var spares []int
	for deadline := time.Now().Add(30 * time.Second); len(spares) < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("spare shims serving: %v, want two\n%s", spares, d.logs())
		}
		spares = spares[:0]
		files, _ := filepath.Glob(filepath.Join(d.state, ".spare", "*", shimapi.PidFileName))
		for _, f := range files {
			if pid, err := shimapi.ReadPidFile(filepath.Dir(f)); err == nil && proc.Alive(pid) {
				spares = append(spares, pid)
			}
		}
	}
	t.Cleanup(func() {
		for _, pid := range spares {
			if proc.Alive(pid) {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	d.kill()
	sparesExit(t, d)

	// Killed while a spare is starting (its folder is made just before
	// its `berth-shim start`): a spare whose daemon died before it began
	// to watch must notice too (seen: spares of test daemons killed early
	// serving on, their pidfd naming a reaped process).
	for range 10 {
		d.start()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if m, _ := filepath.Glob(filepath.Join(d.state, ".spare", "*")); len(m) > 0 {
				break
			}
		}
		d.kill()
		sparesExit(t, d)
	}
}

// servingSpares returns the folders and pids of the spare shims serving
// in d's spare folders.
func servingSpares(d *daemon) map[string]int {
	out := map[string]int{}
	files, _ := filepath.Glob(filepath.Join(d.state, ".spare", "*", shimapi.PidFileName))
	for _, f := range files {
		if pid, err := shimapi.ReadPidFile(filepath.Dir(f)); err == nil && proc.Alive(pid) {
			out[filepath.Dir(f)] = pid
		}
	}
	return out
}

// TestSpareStartedByBerthdOutlivesItsKill: berthd starts a spare shim with
// one process start, its own child (through `berth-shim start` it would be
// reparented at once: two starts); bound to a container, that shim lives
// on when berthd is SIGKILLed (its own session; reparented) and the next
// berthd restores the container, while an idle spare exits by itself and
// the next berthd sweeps its folder.
func TestSpareStartedByBerthdOutlivesItsKill(t *testing.T) {
	d := newDaemon(t, withRuntimeConfig("spare_shims = 1\n"))
	const ns = "spares"
	ctx := d.nsContext(ns)
	a := d.api()
	var spare int
	eventually(t, 30*time.Second, "no spare shim serving", func() bool {
		for _, pid := range servingSpares(d) {
			spare = pid
		}
		return spare != 0
	})
	berthd := d.cmd.Process.Pid
	if !slices.Contains(proc.Children(berthd), spare) {
		t.Fatalf("spare shim %d is no child of berthd %d: started through another process", spare, berthd)
	}
	if sid, err := unix.Getsid(spare); err != nil || sid != spare {
		t.Fatalf("spare shim %d in session %d (%v), want a session of its own", spare, sid, err)
	}

	a.run(t, ctx, "bound", []string{"sleep", "3600"})
	if pid, err := shimapi.ReadPidFile(d.bundle(ns, "bound")); err != nil || pid != spare {
		t.Fatalf("the task's shim is %d (%v), want the spare %d", pid, err, spare)
	}
	var idle map[string]int
	eventually(t, 30*time.Second, "no new spare shim after one was taken", func() bool {
		idle = servingSpares(d)
		return len(idle) == 1
	})

	d.kill()
	// Not sparesExit: the bound shim's command line names a spare folder
	// too.
	for _, pid := range idle {
		eventually(t, 30*time.Second, "the idle spare shim outlived berthd", func() bool { return !proc.Alive(pid) })
	}
	if !proc.Alive(spare) {
		t.Fatalf("the bound shim %d died with berthd", spare)
	}
	for dir := range idle {
		if _, err := os.Stat(dir); err != nil {
			t.Fatalf("the idle spare's folder: %v", err)
		}
	}

	d.start()
	a = d.api()
	for dir := range idle {
		eventually(t, time.Minute, "the next berthd did not sweep the idle spare's folder", func() bool {
			_, err := os.Stat(dir)
			return os.IsNotExist(err)
		})
	}
	resp, err := a.tasks.Get(ctx, &tasksv1.GetRequest{ContainerId: "bound"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Process.Status != shimapi.Status_STATUS_RUNNING {
		t.Fatalf("task after the restart: %v, want running", resp.Process.Status)
	}
	if _, err := a.tasks.Kill(ctx, &tasksv1.KillRequest{ContainerId: "bound", Signal: uint32(syscall.SIGKILL)}); err != nil {
		t.Fatal(err)
	}
	if got := a.wait(t, ctx, "bound"); got != 137 {
		t.Fatalf("exit status %d after SIGKILL, want 137", got)
	}
	if _, err := a.tasks.Delete(ctx, &tasksv1.DeleteTaskRequest{ContainerId: "bound"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the bound shim still runs after its task's delete", func() bool { return !proc.Alive(spare) })
}

// sparesExit waits until no spare shim serves in d's spare folders. The
// bound is generous: a spare notices at once, but the machine may be
// loaded.
func sparesExit(t *testing.T, d *daemon) {
	t.Helper()
	const bound = 30 * time.Second
	deadline := time.Now().Add(bound)
	for {
		left := proc.WithArgPrefix(filepath.Join(d.state, ".spare") + "/")
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, pid := range left {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			t.Fatalf("spare shims %v still run %v after berthd was killed", left, bound)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
