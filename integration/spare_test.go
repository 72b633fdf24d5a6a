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
	// Generous: a spare notices at once, but the machine may be loaded.
	deadline := time.Now().Add(30 * time.Second)
	for _, pid := range spares {
		for proc.Alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("spare shim %d still runs %v after berthd was killed", pid, 30*time.Second)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
