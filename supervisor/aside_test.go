package supervisor_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/berthrt/berth/events/topics"
	"github.com/berthrt/berth/internal/proc"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/shimapi"
	"github.com/berthrt/berth/supervisor"
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
	eventually(t, time.Minute, "the old shim exits and its set-aside bundle is removed", func() bool {
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
	eventually(t, time.Minute, "the second shim exits and its bundle is removed", func() bool {
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
// and maybe its shim, which had not exited: the next daemon's Restore
// shuts such a shim down, kills it if it has not exited after its while
// (never a process that merely reuses the pid), and removes the folder.
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
	// The shim was never shut down here: the restore tells it to, and it
	// gets its while to exit (it may be deleting the runtime's container)
	// before it would be killed, in the background of the restore.
	eventually(t, 20*time.Second, "the set-aside shim gone and the folders removed", func() bool {
		return !proc.Alive(pid) && len(e.asideLeft(t)) == 0
	})
	if _, err := s2.Get(e.ns, "cut"); err == nil {
		t.Fatal("a task set aside was restored")
	}
}

// A task created with cleanup_on_exit may leave the runtime's delete of
// its container running after Delete returned (task/release.go): a new
// task of the same id waits until the old shim has exited, then is
// created whole, rather than meeting the runtime's container of the old
// one. The runtime here holds every delete until the test lets it go.
func TestCreateWaitsForDeferredRuntimeDelete(t *testing.T) {
	e := newEnv(t, "sv-deferred")
	s := e.supervisor(newRecorder())
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Fatal(err)
	}
	runtime, open := testutil.GatedRuntime(t, runc, "delete")

	opts := e.opts("reuse", "true")
	opts.Runtime, opts.Start, opts.CleanupOnExit = runtime, true, true
	old, err := s.Create(ctx(t), e.ns, "reuse", opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := wait(t, old); got != 0 {
		t.Fatalf("exit %d, want 0", got)
	}
	oldShim := shimPid(t, old)
	if _, err := s.Delete(ctx(t), e.ns, "reuse"); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(e.stateDir, ".runc", e.ns, "reuse")
	if _, err := os.Stat(state); err != nil {
		t.Fatalf("the runtime's state of the deleted task is gone although its delete is held back: %v", err)
	}

	created := make(chan error, 1)
	go func() {
		sh, err := s.Create(ctx(t), e.ns, "reuse", e.opts("reuse", "sleep", "100"))
		if err == nil {
			_, err = sh.Task().Kill(ctx(t), &shimapi.KillRequest{Id: "reuse", Signal: 9})
		}
		created <- err
	}()
	select {
	case err := <-created:
		t.Fatalf("a task of the same id was created (%v) while the old one's runtime delete was held back", err)
	case <-time.After(300 * time.Millisecond):
	}
	if !proc.Alive(oldShim) {
		t.Fatal("the old shim exited before its runtime delete ran")
	}
	open()
	if err := <-created; err != nil {
		t.Fatalf("create after the old task's release: %v", err)
	}
	if proc.Alive(oldShim) {
		t.Fatal("the new task was created before the old shim exited")
	}
	sh, err := s.Get(e.ns, "reuse")
	if err != nil {
		t.Fatal(err)
	}
	e.deleteKilledReuse(s, sh, oldShim)
}

// runRm creates and starts task id running args with cleanup_on_exit (as
// `berthctl run --rm` does), waits for its exit and returns the shim's
// pid.
func (e *env) runRm(s *supervisor.Supervisor, id string, args ...string) int {
	e.t.Helper()
	return e.runRmOpts(s, id, e.opts(id, args...))
}

// runRmOpts is runRm with the task's options given.
func (e *env) runRmOpts(s *supervisor.Supervisor, id string, opts supervisor.CreateOpts) int {
	e.t.Helper()
	opts.Start, opts.CleanupOnExit = true, true
	sh, err := s.Create(ctx(e.t), e.ns, id, opts)
	if err != nil {
		e.t.Fatalf("create %s: %v", id, err)
	}
	if got := wait(e.t, sh); got != 0 {
		e.t.Fatalf("%s: exit %d, want 0", id, got)
	}
	return shimPid(e.t, sh)
}

// asideAnswers reports whether the shim serving from the one folder set
// aside answers a new connection (it was not shut down: a shut-down shim
// closes its listener) and says its task is deleted.
func (e *env) asideAnswers(t *testing.T, shimPid int) bool {
	t.Helper()
	names := e.asideLeft(t)
	switch len(names) {
	case 0:
		t.Log("no folder set aside: the shim exited, and the folder was removed")
		return false
	case 1:
	default:
		t.Fatalf("set aside: %v, want one folder", names)
	}
	c, cancel := ctxTimeout(5 * time.Second)
	defer cancel()
	client, task, err := shimapi.Connect(c, filepath.Join(e.asideDir(), names[0]))
	if err != nil {
		t.Logf("dial the set-aside shim: %v", err)
		return false
	}
	defer client.Close() // at once: the shim's exit waits for it
	resp, err := task.Connect(c, &shimapi.ConnectRequest{})
	if err != nil {
		t.Logf("connect to the set-aside shim: %v", err)
		return false
	}
	if int(resp.ShimPid) != shimPid || !resp.TaskDeleted {
		t.Fatalf("set-aside shim: pid %d, task deleted %v; want pid %d, deleted", resp.ShimPid, resp.TaskDeleted, shimPid)
	}
	return true
}

// assertNoCgroup fails when a cgroup of task id is left in any hierarchy:
// the shim's runtime delete removes them, and a shim killed before it
// leaves them.
func (e *env) assertNoCgroup(id string) {
	e.t.Helper()
	hierarchies, err := filepath.Glob("/sys/fs/cgroup/*")
	if err != nil {
		e.t.Fatal(err)
	}
	for _, h := range append(hierarchies, "/sys/fs/cgroup") {
		cg := filepath.Join(h, "berth", e.ns, id)
		if _, err := os.Stat(cg); !os.IsNotExist(err) {
			procs, perr := os.ReadFile(filepath.Join(cg, "cgroup.procs"))
			e.t.Errorf("cgroup %s: %v, want it gone (processes in it: %q %v)", cg, err, procs, perr)
			os.Remove(cg) // empty: its container exited
		}
	}
}

// Delete answers before the shim of a deleted task is shut down: the shim,
// serving from its set-aside folder, waits asideShutdownDelay for its
// Shutdown (so its deferred runtime delete does not compete with the
// client's last calls), then exits having deleted the runtime's
// container. Only the Shutdown ends it here: the wait for its exit is
// longer than the test's.
func TestDeleteShutsShimDownAfterDelay(t *testing.T) {
	e := newEnv(t, "sv-asidedelay")
	s := e.supervisor(newRecorder())
	const delay = 2 * time.Second
	supervisor.SetAsideShutdownDelay(s, delay)
	supervisor.SetAsideExitWait(s, 30*time.Second)
	pid := e.runRm(s, "later", "true")
	// The delay starts within Delete. A shim found shut down later than
	// the delay after Delete began (a loaded host) says nothing.
	began := time.Now()
	if _, err := s.Delete(ctx(t), e.ns, "later"); err != nil {
		t.Fatal(err)
	}
	answers := e.asideAnswers(t, pid)
	if elapsed := time.Since(began); !answers && elapsed < delay {
		t.Fatalf("the shim was shut down before Delete answered, %v after Delete began", elapsed)
	}
	time.Sleep(200 * time.Millisecond)
	answers = e.asideAnswers(t, pid)
	if elapsed := time.Since(began); !answers && elapsed < delay {
		t.Fatalf("the shim was shut down %v after Delete began, before the delay", elapsed)
	} else if !answers {
		t.Logf("no check of the delay: %v passed since Delete began, more than it (%v)", elapsed, delay)
	}
	eventually(t, time.Minute, "the shim shut down after the delay, exited, and its folder removed", func() bool {
		return !proc.Alive(pid) && len(e.asideLeft(t)) == 0
	})
	e.assertGone("later", pid)
	e.assertNoCgroup("later")
}

// A Create of the name of a deleted task whose shim waits for its Shutdown
// has it shut down at once, and waits only for its exit.
func TestCreateHurriesAsideShutdown(t *testing.T) {
	e := newEnv(t, "sv-asidehurry")
	s := e.supervisor(newRecorder())
	supervisor.SetAsideShutdownDelay(s, time.Hour)
	oldShim := e.runRm(s, "reuse", "true")
	if _, err := s.Delete(ctx(t), e.ns, "reuse"); err != nil {
		t.Fatal(err)
	}
	c, cancel := ctxTimeout(15 * time.Second)
	defer cancel()
	sh, err := s.Create(c, e.ns, "reuse", e.opts("reuse", "sleep", "100"))
	if err != nil {
		t.Fatalf("create of the name while the old shim waits for its shutdown: %v", err)
	}
	e.endReusedName(s, sh, oldShim) // the new shim waits an hour for its shutdown too
}

// Close does not wait out the delay of a deleted task's Shutdown: it shuts
// the shim down, which deletes the runtime's container and exits, and
// leaves nothing.
func TestCloseShutsAsideShimDown(t *testing.T) {
	e := newEnv(t, "sv-asideclose")
	s := e.supervisor(newRecorder())
	supervisor.SetAsideShutdownDelay(s, time.Hour)
	supervisor.SetAsideExitWait(s, 30*time.Second)
	pid := e.runRm(s, "gone", "true")
	if _, err := s.Delete(ctx(t), e.ns, "gone"); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		s.Close()
	}()
	select {
	case <-closed:
	case <-time.After(15 * time.Second):
		t.Fatal("Close waits for the delayed shutdown of a deleted task's shim")
	}
	if proc.Alive(pid) {
		t.Fatal("the shim of the deleted task still runs after Close")
	}
	if left := e.asideLeft(t); len(left) != 0 {
		t.Fatalf("set aside after Close: %v", left)
	}
	e.assertGone("gone", pid)
	e.assertNoCgroup("gone")
}

// A daemon that dies after Delete answered, before the delayed Shutdown of
// the shim, leaves the shim serving from its set-aside folder, never told
// to shut down: the next daemon's Restore shuts it down, so that it
// deletes the runtime's container and exits, rather than wait for it and
// kill it (only the Shutdown ends it here: the wait for its exit is
// longer than the test's).
func TestRestoreShutsAsideShimDown(t *testing.T) {
	e := newEnv(t, "sv-asidecrash")
	s1 := e.supervisor(newRecorder())
	pid := e.runRm(s1, "cut", "true")
	e.dieAfterDelete(s1, "cut", pid)

	s2 := e.supervisor(newRecorder())
	supervisor.SetAsideExitWait(s2, 30*time.Second)
	if err := s2.Restore(ctx(t)); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the set-aside shim shut down, exited, and its folder removed", func() bool {
		return !proc.Alive(pid) && len(e.asideLeft(t)) == 0
	})
	e.assertGone("cut", pid)
	e.assertNoCgroup("cut")
}

// dieAfterDelete deletes the task id, whose shim is shimPid, as s does up
// to Delete's answer, then stands for the daemon's death before the
// shim's delayed Shutdown (Close would shut the set-aside shim down): the
// shim serves on from its folder set aside.
func (e *env) dieAfterDelete(s *supervisor.Supervisor, id string, shimPid int) {
	t := e.t
	t.Helper()
	sh, err := s.Get(e.ns, id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sh.Task().Delete(ctx(t), &shimapi.DeleteRequest{Id: id}); err != nil {
		t.Fatal(err)
	}
	s.Close() // the shim lives on, as after a SIGKILL of the daemon
	if err := os.MkdirAll(e.asideDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(sh.Bundle, filepath.Join(e.asideDir(), e.ns+"."+id+".1.1")); err != nil {
		t.Fatal(err)
	}
	if !e.asideAnswers(t, shimPid) {
		t.Fatal("the set-aside shim does not answer before the restore")
	}
}

// A restored supervisor holds the name of a task that an earlier daemon
// set aside, while the shim left serving from the folder finishes: a new
// task of that name waits for its exit, as it does in the daemon that set
// it aside. Without that, the new task met the old one's container in the
// runtime: runc refused the id ("already exists") while the old shim's
// deferred runtime delete had yet to run, and that delete (`runc delete
// --force` of the id) could take the new container. A runtime whose
// delete is slow keeps the old container there here.
func TestRestoreHoldsAsideName(t *testing.T) {
	e := newEnv(t, "sv-asidename")
	slow := filepath.Join(e.scratch, "slow-delete-runc")
	script := "#!/bin/sh\nfor a; do [ \"$a\" = delete ] && sleep 1; done\nexec runc \"$@\"\n"
	if err := os.WriteFile(slow, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	s1 := e.supervisor(newRecorder())
	opts := e.opts("reuse", "true")
	opts.Runtime = slow
	oldShim := e.runRmOpts(s1, "reuse", opts)
	e.dieAfterDelete(s1, "reuse", oldShim)

	s2 := e.supervisor(newRecorder())
	supervisor.SetAsideExitWait(s2, 30*time.Second)
	if err := s2.Restore(ctx(t)); err != nil {
		t.Fatal(err)
	}
	sh, err := s2.Create(ctx(t), e.ns, "reuse", e.opts("reuse", "sleep", "100"))
	if err != nil {
		t.Fatalf("create of the name of the task set aside before the restore: %v", err)
	}
	e.endReusedName(s2, sh, oldShim)
}

// endReusedName checks that the new task sh of the name "reuse" was
// created after the exit of the old task's shim oldShim, kills and
// deletes it, closes s, and checks that nothing of either task is left.
func (e *env) endReusedName(s *supervisor.Supervisor, sh *supervisor.Shim, oldShim int) {
	t := e.t
	t.Helper()
	if proc.Alive(oldShim) {
		t.Fatal("the new task was created before the old shim exited")
	}
	if _, err := sh.Task().Kill(ctx(t), &shimapi.KillRequest{Id: "reuse", Signal: 9}); err != nil {
		t.Fatal(err)
	}
	e.deleteKilledReuse(s, sh, oldShim)
}

// deleteKilledReuse waits for the exit of the new task sh of the name
// "reuse", killed with SIGKILL, deletes it, closes s (a shim that waits
// for its shutdown gets it then), and checks that nothing of it or of the
// old task's shim oldShim is left.
func (e *env) deleteKilledReuse(s *supervisor.Supervisor, sh *supervisor.Shim, oldShim int) {
	t := e.t
	t.Helper()
	if got := wait(t, sh); got != 137 {
		t.Fatalf("new task: exit %d, want 137", got)
	}
	newShim := shimPid(t, sh)
	if _, err := s.Delete(ctx(t), e.ns, "reuse"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	e.assertGone("reuse", oldShim, newShim)
	e.assertNoCgroup("reuse")
}
