package supervisor_test

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/berthrt/berth/events/topics"
	"github.com/berthrt/berth/internal/proc"
	"github.com/berthrt/berth/shimapi"
)

// asideDir is where Delete sets the bundles of deleted tasks aside.
func (e *env) asideDir() string { return filepath.Join(e.stateDir, ".deleted") }

// asideLeft lists what is set aside and not removed yet.
func (e *env) asideLeft(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(e.asideDir())
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, en := range entries {
		names = append(names, en.Name())
	}
	return names
}

// A deleted task's id is free when Delete returns: a new task of the same
// id is created, runs and is deleted while the old shim exits and its
// bundle, set aside, is removed in the background; the removal of the old
// bundle takes nothing of the new task's.
func TestDeleteFreesIDAtOnce(t *testing.T) {
	e := newEnv(t, "sv-aside")
	rec := newRecorder()
	s := e.supervisor(rec)

	old := e.create(s, "reuse", "sh", "-c", "exit 4")
	start(t, old)
	if got := wait(t, old); got != 4 {
		t.Fatalf("exit %d, want 4", got)
	}
	oldShim := shimPid(t, old)
	if resp, err := s.Delete(ctx(t), e.ns, "reuse"); err != nil || resp.ExitStatus != 4 {
		t.Fatalf("delete: %+v, %v", resp, err)
	}
	// At once, whether or not the old shim has exited yet.
	sh := e.create(s, "reuse", "sleep", "100")
	eventually(t, 10*time.Second, "the old shim exits and its set-aside bundle is removed", func() bool {
		return !proc.Alive(oldShim) && len(e.asideLeft(t)) == 0
	})
	// The new task is whole: its shim answers, its bundle and runtime
	// state are there, it starts and exits.
	for _, p := range []string{filepath.Join(sh.Bundle, "config.json"), filepath.Join(sh.Bundle, shimapi.SocketName), filepath.Join(e.stateDir, ".runc", e.ns, "reuse")} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("new task of the same id: %v", err)
		}
	}
	if pid := shimPid(t, sh); pid == oldShim || !proc.Alive(pid) {
		t.Fatalf("new task's shim %d (old %d)", pid, oldShim)
	}
	if _, err := sh.Task().Kill(ctx(t), &shimapi.KillRequest{Id: "reuse", Signal: 9}); err != nil {
		t.Fatal(err)
	}
	if got := wait(t, sh); got != 137 {
		t.Fatalf("exit %d, want 137", got)
	}
	newShim := shimPid(t, sh)
	if _, err := s.Delete(ctx(t), e.ns, "reuse"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the second shim exits and its bundle is removed", func() bool {
		return !proc.Alive(newShim) && len(e.asideLeft(t)) == 0
	})
	if _, err := os.Stat(sh.Bundle); !os.IsNotExist(err) {
		t.Fatalf("bundle after the second delete: %v", err)
	}
	e.assertGone("reuse", oldShim, newShim)
	if n := rec.count(e.ns, "reuse", topics.TaskDelete); n != 2 {
		t.Fatalf("%d TaskDelete events for two deletes", n)
	}
}

// A daemon that dies after Delete set a bundle aside leaves the folder,
// and maybe its shim, which was shut down but had not exited: the next
// daemon's Restore kills such a shim (never a process that merely reuses
// the pid) and removes the folder.
func TestRestoreRemovesAsideBundles(t *testing.T) {
	e := newEnv(t, "sv-asiderestore")
	s1 := e.supervisor(newRecorder())
	sh := e.create(s1, "cut", "true")
	start(t, sh)
	wait(t, sh)
	pid := shimPid(t, sh)
	if _, err := sh.Task().Delete(ctx(t), &shimapi.DeleteRequest{Id: "cut"}); err != nil {
		t.Fatal(err)
	}
	s1.Close() // the shim lives on, as after a SIGKILL of the daemon
	// Where Delete had moved the bundle when the daemon died.
	if err := os.MkdirAll(e.asideDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	aside := filepath.Join(e.asideDir(), e.ns+".cut.1.1")
	if err := os.Rename(sh.Bundle, aside); err != nil {
		t.Fatal(err)
	}
	// A folder whose pid file names a process that is no shim.
	stale := filepath.Join(e.asideDir(), e.ns+".other.1.2")
	if err := os.MkdirAll(stale, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stale, shimapi.PidFileName), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		t.Fatal(err)
	}
	if !proc.Alive(pid) {
		t.Fatal("the shim exited without a Shutdown")
	}

	s2 := e.supervisor(newRecorder())
	if err := s2.Restore(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if left := e.asideLeft(t); len(left) != 0 {
		t.Fatalf("set-aside folders after restore: %v", left)
	}
	eventually(t, 10*time.Second, "the set-aside shim killed", func() bool { return !proc.Alive(pid) })
	if _, err := s2.Get(e.ns, "cut"); err == nil {
		t.Fatal("a task set aside was restored")
	}
}
