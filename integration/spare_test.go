package integration

import (
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/berthrt/berth/internal/proc"
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
