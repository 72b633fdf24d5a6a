package supervisor_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/internal/proc"
	"github.com/berthrt/berth/supervisor"
)

// A shim whose task was deleted and set aside may die before its deferred
// runtime delete (task/release.go) has run: killed, crashed, or killed by
// the daemon after asideExitWait. The daemon then deletes the runtime's
// container itself (`berth-shim delete`), so that neither runc's state nor
// the container's cgroups are left, and a new task of the id runs. Removing
// runc's state folder alone left a cgroup in every hierarchy.
func TestAsideShimKilledBeforeRuntimeDelete(t *testing.T) {
	e, s, rt, oldShim := deletedWithHeldRuntime(t, "sv-asidekill")
	rt.killHeldAndShim(oldShim)

	e.waitAsideRemoved()
	e.assertRuntimeReleased("reuse", oldShim)
	sh := e.create(s, "reuse", "sleep", "100")
	e.endReusedName(s, sh, oldShim)
}

// The restore path of the same: a daemon killed after it set a task's
// bundle aside, the task's shim killed before its runtime delete, a new
// daemon started. Its Restore deletes the runtime's container the shim
// left, then removes the folder; a new task of the id runs. Removing the
// folder alone left runc's state and the cgroups, and runc then refused
// a new container of the id.
func TestRestoreReleasesRuntimeOfKilledAsideShim(t *testing.T) {
	e := newEnv(t, "sv-asidekillrestore")
	rt := e.heldDeleteRuntime()
	s1 := e.supervisor(newRecorder())
	opts := e.opts("reuse", "true")
	opts.Runtime = rt.path
	oldShim := e.runRmOpts(s1, "reuse", opts)
	e.dieAfterDelete(s1, "reuse", oldShim)
	rt.killHeldAndShim(oldShim)
	if _, err := os.Stat(filepath.Join(e.stateDir, ".runc", e.ns, "reuse")); err != nil {
		t.Fatalf("runc's state of the killed shim's container before the restore: %v", err)
	}

	s2 := e.supervisor(newRecorder())
	if err := s2.Restore(ctx(t)); err != nil {
		t.Fatal(err)
	}
	e.waitAsideRemoved()
	e.assertRuntimeReleased("reuse", oldShim)
	sh, err := s2.Create(ctx(t), e.ns, "reuse", e.opts("reuse", "sleep", "100"))
	if err != nil {
		t.Fatalf("create of the id of the killed shim's task after the restore: %v", err)
	}
	e.endReusedName(s2, sh, oldShim)
}

// A set-aside shim killed in the middle of its deferred runtime delete
// leaves that `runc delete --force`, reparented away, running; it names
// the task's bundle path from before the set-aside in its environment.
// The daemon's cleanup kills it before the folder goes and the name is
// free: left running, it deleted by id the container of a new task of
// the name. Killing only what names the set-aside folder missed it.
func TestAsideShimKilledDuringRuntimeDelete(t *testing.T) {
	e, s, rt, oldShim := deletedWithHeldRuntime(t, "sv-asideorphan")
	held := rt.heldDelete()
	if err := unix.Kill(oldShim, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e.waitAsideRemoved()
	if proc.Alive(held) {
		t.Errorf("the killed shim's runtime delete %d still runs once its folder is removed and the name free", held)
	}
	rt.release()
	e.assertRuntimeReleased("reuse", oldShim)
	sh := e.create(s, "reuse", "sleep", "100")
	e.endReusedName(s, sh, oldShim)
}

// deletedWithHeldRuntime runs task "reuse" (/bin/true, cleanup_on_exit)
// under a heldRuntime, on a supervisor that never shuts a set-aside shim
// down itself, and deletes it: the shim, serving set aside, starts its
// deferred runtime delete on its own (runtimeDeleteDelay), and that delete
// is held. It returns the shim's pid.
func deletedWithHeldRuntime(t *testing.T, ns string) (*env, *supervisor.Supervisor, *heldRuntime, int) {
	t.Helper()
	e := newEnv(t, ns)
	s := e.supervisor(newRecorder())
	supervisor.SetAsideShutdownDelay(s, time.Hour)
	supervisor.SetAsideExitWait(s, 30*time.Second)
	rt := e.heldDeleteRuntime()
	opts := e.opts("reuse", "true")
	opts.Runtime = rt.path
	oldShim := e.runRmOpts(s, "reuse", opts)
	if _, err := s.Delete(ctx(t), e.ns, "reuse"); err != nil {
		t.Fatal(err)
	}
	return e, s, rt, oldShim
}

// waitAsideRemoved waits until the set-aside folder of a killed shim is
// removed.
func (e *env) waitAsideRemoved() {
	e.t.Helper()
	eventually(e.t, 20*time.Second, "the set-aside folder of the killed shim removed", func() bool {
		return len(e.asideLeft(e.t)) == 0
	})
}

// heldRuntime is runc behind a wrapper that holds every `delete` that a
// shim runs (BERTH_RUNTIME_BUNDLE set: not berth-shim delete's) while its
// hold file exists, recording the held wrapper's pid in a file.
type heldRuntime struct {
	t    *testing.T
	path string // the wrapper
	hold string // the hold file
	pids string // folder of the held wrappers' pid files
}

// heldDeleteRuntime writes a heldRuntime. At the end of the test the hold
// is lifted and runc's state of the env's task "reuse" is deleted, so that
// a failed test leaves no cgroup behind (the env's cleanup then removes
// the namespace's empty cgroups).
func (e *env) heldDeleteRuntime() *heldRuntime {
	t := e.t
	t.Helper()
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rt := &heldRuntime{t: t, path: filepath.Join(dir, "held-runc"), hold: filepath.Join(dir, "hold"), pids: filepath.Join(dir, "held")}
	if err := os.Mkdir(rt.pids, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rt.hold, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\nfor a; do\n  if [ \"$a\" = delete ] && [ -n \"$BERTH_RUNTIME_BUNDLE\" ] && [ -e " + rt.hold + " ]; then\n" +
		"    echo $$ > " + rt.pids + "/$$\n" +
		"    i=0; while [ -e " + rt.hold + " ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done\n  fi\ndone\n" +
		"exec " + runc + " \"$@\"\n"
	if err := os.WriteFile(rt.path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(e.stateDir, ".runc", e.ns)
	t.Cleanup(func() {
		rt.release()
		if _, err := os.Stat(filepath.Join(root, "reuse")); err == nil {
			exec.Command(runc, "--root", root, "delete", "--force", "reuse").Run()
		}
	})
	return rt
}

func (rt *heldRuntime) release() {
	if err := os.Remove(rt.hold); err != nil && !os.IsNotExist(err) {
		rt.t.Error(err)
	}
}

// killHeldAndShim waits until the shim shimPid's runtime delete is held,
// SIGKILLs the held wrapper (before it could delete anything) and the
// shim, and lifts the hold for the deletes that come after.
func (rt *heldRuntime) killHeldAndShim(shimPid int) {
	t := rt.t
	t.Helper()
	held := rt.heldDelete()
	for _, pid := range []int{held, shimPid} {
		if err := unix.Kill(pid, unix.SIGKILL); err != nil {
			t.Fatalf("kill %d: %v", pid, err)
		}
	}
	eventually(t, time.Minute, "the held delete and the shim gone", func() bool {
		return !proc.Alive(held) && !proc.Alive(shimPid)
	})
	rt.release()
}

// heldDelete waits until one runtime delete is held and returns the pid
// of its wrapper.
func (rt *heldRuntime) heldDelete() int {
	t := rt.t
	t.Helper()
	var held []int
	eventually(t, 20*time.Second, "the shim's runtime delete held", func() bool {
		entries, err := os.ReadDir(rt.pids)
		if err != nil {
			t.Fatal(err)
		}
		for _, en := range entries {
			pid, err := strconv.Atoi(strings.TrimSpace(en.Name()))
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, pid)
		}
		return len(held) > 0
	})
	if len(held) != 1 {
		t.Fatalf("held runtime deletes %v, want one", held)
	}
	return held[0]
}

// assertRuntimeReleased checks that nothing of the runtime's container
// of task id, whose shim shimPid was killed, is left: no process, no runc
// state, no cgroup.
func (e *env) assertRuntimeReleased(id string, shimPid int) {
	e.t.Helper()
	e.assertGone(id, shimPid)
	e.assertNoCgroup(id)
}
