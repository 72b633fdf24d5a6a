package supervisor_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/events/topics"
	"github.com/berthrt/berth/internal/proc"
	"github.com/berthrt/berth/internal/unixsock"
	"github.com/berthrt/berth/shimapi"
	"github.com/berthrt/berth/supervisor"
)

func TestCreateStartWaitDelete(t *testing.T) {
	e := newEnv(t, "sv-life")
	rec := newRecorder()
	rec.failNext = 2 // the first two forwards fail: retried, nothing lost or doubled
	s := e.supervisor(rec)

	sh := e.create(s, "exit3", "sh", "-c", "sleep 0.3; exit 3")
	if sh.TaskPid() == 0 {
		t.Fatal("no init pid after create")
	}
	if err := sh.Ready(ctx(t)); err != nil {
		t.Fatalf("Ready after create: %v", err)
	}
	if got, err := s.Get(e.ns, "exit3"); err != nil || got != sh {
		t.Fatalf("Get = %v, %v", got, err)
	}
	if _, err := s.Get(e.ns, "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Get of unknown task: %v", err)
	}
	if _, err := s.Create(ctx(t), e.ns, "exit3", e.opts("exit3", "true")); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("second create: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(sh.Bundle, "config.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config.json: %v %v", fi, err)
	}
	start(t, sh)
	if _, err := s.Delete(ctx(t), e.ns, "exit3"); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("delete while running: %v, want failed precondition", err)
	}
	if got := wait(t, sh); got != 3 {
		t.Fatalf("exit status %d, want 3", got)
	}
	want := []string{topics.TaskCreate, topics.TaskStart, topics.TaskExit + ":3"}
	eventually(t, time.Minute, "create, start and exit forwarded", func() bool {
		return slices.Equal(rec.topics(e.ns, "exit3"), want)
	})
	if got := rec.topics(e.ns, "exit3"); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	var last uint64
	for _, env := range rec.of(e.ns, "exit3") {
		if env.Seq != last+1 {
			t.Fatalf("events out of order or with a gap: seq %d after %d", env.Seq, last)
		}
		last = env.Seq
	}
	if rec.failed != 2 {
		t.Fatalf("%d forwards failed, want 2", rec.failed)
	}
	shimPid := shimPid(t, sh)

	// Everything gets acked: a new reader of the shim finds nothing old.
	// (It takes the stream over; the supervisor's loop reopens it, gets
	// what it had not acked yet, acks without forwarding again.)
	c, task, err := shimapi.Connect(ctx(t), sh.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "every event acked", func() bool { return pendingEvents(t, task) == 0 })
	c.Close()
	if got := rec.topics(e.ns, "exit3"); !slices.Equal(got, want) {
		t.Fatalf("events after the stream was taken over: %v, want %v", got, want)
	}

	resp, err := s.Delete(ctx(t), e.ns, "exit3")
	if err != nil {
		t.Fatal(err)
	}
	if resp.ExitStatus != 3 || resp.Pid != sh.TaskPid() {
		t.Fatalf("delete = %+v", resp)
	}
	eventually(t, time.Minute, "delete forwarded", func() bool {
		return rec.count(e.ns, "exit3", topics.TaskDelete) == 1
	})
	if _, err := os.Stat(sh.Bundle); !os.IsNotExist(err) {
		t.Fatalf("bundle after delete: %v", err)
	}
	eventually(t, time.Minute, "shim exits after delete", func() bool { return !proc.Alive(shimPid) })
	e.assertGone("exit3", shimPid)
	if _, err := s.Get(e.ns, "exit3"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Get after delete: %v", err)
	}
}

// pendingEvents reads the shim's event stream for a moment and counts what
// it sends.
func pendingEvents(t *testing.T, task shimapi.TaskClient) int {
	t.Helper()
	c, cancel := ctxTimeout(300 * time.Millisecond)
	defer cancel()
	stream, err := task.Events(c, &shimapi.EventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		if _, err := stream.Recv(); err != nil {
			return n
		}
		n++
	}
}

func TestCreateFailureCleansUp(t *testing.T) {
	e := newEnv(t, "sv-fail")
	s := e.supervisor(newRecorder())
	opts := e.opts("bad", "true")
	opts.Rootfs = []*shimapi.Mount{{Type: "nosuchfs", Source: "none"}}
	_, err := s.Create(ctx(t), e.ns, "bad", opts)
	if err == nil {
		t.Fatal("create with a bad rootfs succeeded")
	}
	t.Logf("create failed as it should: %v", err)
	if _, err := os.Stat(e.bundle("bad")); !os.IsNotExist(err) {
		t.Fatalf("bundle after failed create: %v", err)
	}
	if pids := shimsOf(t, e.bundle("bad")); len(pids) > 0 {
		t.Fatalf("processes left that name the bundle: %s", describeProcs(pids))
	}
	if _, err := s.Get(e.ns, "bad"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Get after failed create: %v", err)
	}
	// The name is free again.
	sh := e.create(s, "bad", "true")
	start(t, sh)
	if got := wait(t, sh); got != 0 {
		t.Fatalf("exit %d", got)
	}
}

// describeProcs names each pid by its state and command line, read now,
// so that a failure says which process was left (a shim, its runtime,
// berth-shim delete) and whether it was still exiting.
func describeProcs(pids []int) string {
	var b strings.Builder
	for _, pid := range pids {
		st, _ := proc.State(pid)
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		fmt.Fprintf(&b, "[pid %d state %c: %s] ", pid, st, bytes.ReplaceAll(bytes.TrimRight(cmd, "\x00"), []byte{0}, []byte(" ")))
	}
	return b.String()
}

// shimsOf returns the pids of processes whose command line names bundle.
func shimsOf(t *testing.T, bundle string) []int {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err != nil || !containsArg(data, bundle) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil && proc.Alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestDeathDetectedWhileRunning(t *testing.T) {
	e := newEnv(t, "sv-death")
	rec := newRecorder()
	s := e.supervisor(rec)
	sh := e.create(s, "victim", "sleep", "1000")
	start(t, sh)
	pid, initPid := shimPid(t, sh), int(sh.TaskPid())

	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, time.Minute, "death noticed", func() bool {
		_, ok := sh.Exited()
		return ok
	})
	t.Logf("shim death noticed and handled in %v", took)
	if took > 3*time.Second {
		t.Errorf("death took %v to notice, want about a second", took)
	}
	st, _ := sh.Exited()
	if st.Status != 137 {
		t.Fatalf("exit status %d, want 137 (synthesized)", st.Status)
	}
	if _, err := sh.Task().State(ctx(t), &shimapi.StateRequest{Id: sh.ID}); !errors.Is(err, errdefs.ErrNotFound) && !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("call to dead shim: %v", err)
	}
	eventually(t, time.Minute, "exit published and bundle reduced", func() bool {
		_, err := os.Stat(filepath.Join(sh.Bundle, "shim-reaped"))
		return rec.count(e.ns, "victim", topics.TaskExit) == 1 && err == nil
	})
	e.assertGone("victim", pid, initPid)

	resp, err := s.Delete(ctx(t), e.ns, "victim")
	if err != nil {
		t.Fatal(err)
	}
	if resp.ExitStatus != 137 {
		t.Fatalf("delete = %+v", resp)
	}
	if got := rec.topics(e.ns, "victim"); !slices.Equal(got[len(got)-2:], []string{topics.TaskExit + ":137", topics.TaskDelete + ":137"}) {
		t.Fatalf("events %v", got)
	}
	if _, err := os.Stat(sh.Bundle); !os.IsNotExist(err) {
		t.Fatalf("bundle after delete: %v", err)
	}
}

func TestRestore(t *testing.T) {
	e := newEnv(t, "sv-restore")
	rec1 := newRecorder()
	s1 := e.supervisor(rec1)
	const loop = "while true; do sleep 0.1; done"

	// running: runs across the restart.
	running := e.create(s1, "running", "sleep", "1000")
	start(t, running)
	// exitsdown: exits (7) while no daemon runs; delivered once after.
	exitsDown := e.create(s1, "exitsdown", "sh", "-c", "trap 'exit 7' TERM; "+loop)
	start(t, exitsDown)
	// killed: its shim is SIGKILLed while no daemon runs; never exited.
	killed := e.create(s1, "killed", "sleep", "1000")
	start(t, killed)
	// acked: exits (5), the exit is acked, then its shim is killed.
	acked := e.create(s1, "acked", "sh", "-c", "exit 5")
	start(t, acked)
	if wait(t, acked) != 5 {
		t.Fatal("acked: wrong exit")
	}
	eventually(t, time.Minute, "acked: exit forwarded", func() bool {
		return rec1.count(e.ns, "acked", topics.TaskExit) == 1
	})
	// lost: exits (9) and its shim is killed, both while no daemon runs.
	lost := e.create(s1, "lost", "sh", "-c", "trap 'exit 9' TERM; "+loop)
	start(t, lost)

	pids := map[string]int{}
	inits := map[string]int{}
	for _, sh := range []*supervisor.Shim{running, exitsDown, killed, acked, lost} {
		pids[sh.ID], inits[sh.ID] = shimPid(t, sh), int(sh.TaskPid())
	}
	// The TERMs below would be lost on an init whose trap is not set yet.
	for _, id := range []string{"exitsdown", "lost"} {
		eventually(t, time.Minute, id+": its trap set", func() bool { return catches(inits[id], syscall.SIGTERM) })
	}
	time.Sleep(100 * time.Millisecond) // let the acked exit's ack land
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	for id, pid := range pids {
		if !proc.Alive(pid) {
			t.Fatalf("shim of %s died with the supervisor's Close", id)
		}
	}

	// While "down".
	syscall.Kill(inits["exitsdown"], syscall.SIGTERM)
	syscall.Kill(inits["lost"], syscall.SIGTERM)
	eventually(t, time.Minute, "lost: exit persisted", func() bool {
		st, err := shimapi.ReadExitFile(e.bundle("lost"))
		return err == nil && st.Status == 9
	})
	eventually(t, time.Minute, "exitsdown: exit persisted", func() bool {
		_, err := shimapi.ReadExitFile(e.bundle("exitsdown"))
		return err == nil
	})
	for _, id := range []string{"killed", "acked", "lost"} {
		syscall.Kill(pids[id], syscall.SIGKILL)
	}
	// Things a restore must skip.
	os.WriteFile(filepath.Join(e.stateDir, "stray-file"), nil, 0o600)
	os.MkdirAll(filepath.Join(e.stateDir, ".hidden", "x"), 0o700)
	os.MkdirAll(filepath.Join(e.stateDir, e.ns, "..."), 0o700)

	rec2 := newRecorder()
	s2 := e.supervisor(rec2)
	began := time.Now()
	if err := s2.Restore(ctx(t)); err != nil {
		t.Fatal(err)
	}
	t.Logf("restore of 5 shims (3 dead) took %v", time.Since(began))

	ids := []string{}
	for _, sh := range s2.List(e.ns) {
		ids = append(ids, sh.ID)
	}
	if want := []string{"acked", "exitsdown", "killed", "lost", "running"}; !slices.Equal(ids, want) {
		t.Fatalf("restored %v, want %v", ids, want)
	}
	get := func(s *supervisor.Supervisor, id string) *supervisor.Shim {
		sh, err := s.Get(e.ns, id)
		if err != nil {
			t.Fatal(err)
		}
		return sh
	}
	// running
	st, err := get(s2, "running").Task().State(ctx(t), &shimapi.StateRequest{Id: "running"})
	if err != nil || st.Status != shimapi.Status_STATUS_RUNNING {
		t.Fatalf("running: state %v, %v", st, err)
	}
	// exitsdown: its exit arrives through the stream, once.
	eventually(t, time.Minute, "exitsdown: exit delivered", func() bool {
		return slices.Equal(rec2.topics(e.ns, "exitsdown"), []string{topics.TaskExit + ":7"})
	})
	// the dead ones
	for id, want := range map[string]uint32{"killed": 137, "acked": 5, "lost": 9} {
		sh := get(s2, id)
		st, ok := sh.Exited()
		if !ok || st.Status != want {
			t.Fatalf("%s: Exited = %+v, %v; want status %d", id, st, ok, want)
		}
		e.assertGone(id, pids[id], inits[id])
	}
	wantExits := map[string][]string{
		"killed": {topics.TaskExit + ":137"},
		"acked":  nil, // published before the restart
		"lost":   {topics.TaskExit + ":9"},
	}
	eventually(t, time.Minute, "exits of dead shims published", func() bool {
		for id, want := range wantExits {
			if !slices.Equal(rec2.topics(e.ns, id), want) {
				return false
			}
		}
		return true
	})

	// A second restart sees the same, and publishes nothing again.
	s2.Close()
	rec3 := newRecorder()
	s3 := e.supervisor(rec3)
	if err := s3.Restore(ctx(t)); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]uint32{"killed": 137, "acked": 5, "lost": 9, "exitsdown": 7} {
		sh := get(s3, id)
		if id == "exitsdown" {
			if resp, err := sh.Task().Wait(ctx(t), &shimapi.WaitRequest{Id: id}); err != nil || resp.ExitStatus != want {
				t.Fatalf("exitsdown: wait %v, %v", resp, err)
			}
			continue
		}
		if st, ok := sh.Exited(); !ok || st.Status != want {
			t.Fatalf("%s after second restore: Exited = %+v, %v", id, st, ok)
		}
	}
	time.Sleep(300 * time.Millisecond)
	for _, id := range []string{"killed", "acked", "lost", "exitsdown", "running"} {
		if got := rec3.topics(e.ns, id); len(got) != 0 {
			t.Fatalf("%s: events again after the second restore: %v", id, got)
		}
	}

	// Delete of a stopped task removes the bundle and says so.
	if _, err := s3.Delete(ctx(t), e.ns, "killed"); err != nil {
		t.Fatal(err)
	}
	if got := rec3.topics(e.ns, "killed"); !slices.Equal(got, []string{topics.TaskDelete + ":137"}) {
		t.Fatalf("killed: events %v", got)
	}
	if _, err := os.Stat(e.bundle("killed")); !os.IsNotExist(err) {
		t.Fatalf("killed: bundle after delete: %v", err)
	}
	// The running one still runs, and is deleted the normal way.
	r := get(s3, "running")
	if _, err := r.Task().Kill(ctx(t), &shimapi.KillRequest{Id: "running", Signal: uint32(syscall.SIGKILL)}); err != nil {
		t.Fatal(err)
	}
	if got := wait(t, r); got != 137 {
		t.Fatalf("running: exit %d", got)
	}
	if _, err := s3.Delete(ctx(t), e.ns, "running"); err != nil {
		t.Fatal(err)
	}
	e.assertGone("running", pids["running"], inits["running"])
}

func TestRestoreMany(t *testing.T) {
	const n = 8
	e := newEnv(t, "sv-many")
	s1 := e.supervisor(newRecorder())
	for i := range n {
		sh := e.create(s1, "t"+strconv.Itoa(i), "sleep", "1000")
		start(t, sh)
	}
	s1.Close()
	s2 := e.supervisor(newRecorder())
	began := time.Now()
	if err := s2.Restore(ctx(t)); err != nil {
		t.Fatal(err)
	}
	took := time.Since(began)
	t.Logf("restore of %d live shims took %v", n, took)
	shims := s2.List(e.ns)
	if len(shims) != n {
		t.Fatalf("restored %d, want %d", len(shims), n)
	}
	for _, sh := range shims {
		if _, ok := sh.Exited(); ok {
			t.Fatalf("%s: reported exited", sh.ID)
		}
		if _, err := sh.Task().Connect(ctx(t), &shimapi.ConnectRequest{Id: sh.ID}); err != nil {
			t.Fatalf("%s: %v", sh.ID, err)
		}
	}
}

// A shim that accepts connections but never answers must not hold Restore
// up; it is settled in the background once it dies.
func TestRestoreSlowShim(t *testing.T) {
	e := newEnv(t, "sv-slow")
	s1 := e.supervisor(newRecorder())
	live := e.create(s1, "live", "sleep", "1000")
	start(t, live)
	s1.Close()

	// The slow "shim": a process whose command line is that of a serving
	// berth-shim for the bundle, and a socket nobody answers on.
	bundle := e.bundle("slow")
	if err := os.MkdirAll(bundle, 0o711); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(bundle, "config.json"), []byte("{}"), 0o600)
	script := filepath.Join(e.scratch, "serve")
	os.WriteFile(script, []byte("sleep 1000\n"), 0o700)
	fake := exec.Command("/bin/sh", "serve", "--bundle", bundle)
	fake.Dir = e.scratch
	// Its own process group, so the cleanup ends the sleep too, not only
	// the shell (a killed shell left its sleep running for 1000 s).
	fake.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := fake.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-fake.Process.Pid, syscall.SIGKILL); fake.Wait() })
	os.WriteFile(filepath.Join(bundle, shimapi.PidFileName), []byte(strconv.Itoa(fake.Process.Pid)), 0o600)
	l, err := unixsock.Listen(shimapi.SocketPath(bundle))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	rec := newRecorder()
	s2 := e.supervisor(rec, func(c *supervisor.Config) { c.RestoreTimeout = 500 * time.Millisecond })
	began := time.Now()
	if err := s2.Restore(ctx(t)); err != nil {
		t.Fatal(err)
	}
	took := time.Since(began)
	t.Logf("restore with one slow shim returned after %v", took)
	// Held up by the slow shim, Restore would return only at the default
	// bound or at ctx's end; a loaded host may stretch the 500 ms by more
	// than a second, never by seconds more.
	if took >= supervisor.DefaultRestoreTimeout {
		t.Fatalf("restore took %v: held up by the slow shim past its RestoreTimeout (500ms)", took)
	}
	if sh, err := s2.Get(e.ns, "live"); err != nil {
		t.Fatal(err)
	} else if _, err := sh.Task().Connect(ctx(t), &shimapi.ConnectRequest{Id: "live"}); err != nil {
		t.Fatalf("live: %v", err)
	}
	slow, err := s2.Get(e.ns, "slow")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := slow.Task().State(ctx(t), &shimapi.StateRequest{Id: "slow"}); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("call to a shim still being restored: %v, want unavailable", err)
	}
	if _, err := s2.Delete(ctx(t), e.ns, "slow"); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("delete of a shim still being restored: %v, want unavailable", err)
	}

	fake.Process.Kill()
	fake.Wait()
	eventually(t, time.Minute, "slow shim settled as dead", func() bool {
		_, ok := slow.Exited()
		return ok
	})
	if got := rec.topics(e.ns, "slow"); !slices.Equal(got, []string{topics.TaskExit + ":137"}) {
		t.Fatalf("slow: events %v", got)
	}
}

// A Delete cut short after the TaskDelete was published (the daemon died
// before the bundle was removed) is finished by the next Restore.
func TestRestoreFinishesDelete(t *testing.T) {
	e := newEnv(t, "sv-fin")
	s1 := e.supervisor(newRecorder())
	sh := e.create(s1, "half", "true")
	start(t, sh)
	wait(t, sh)
	pid := shimPid(t, sh)
	if _, err := sh.Task().Delete(ctx(t), &shimapi.DeleteRequest{Id: "half"}); err != nil {
		t.Fatal(err)
	}
	s1.Close()
	// What deleteLive persists once the TaskDelete is out.
	if err := os.WriteFile(filepath.Join(sh.Bundle, "task-deleted"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	s2 := e.supervisor(rec)
	if err := s2.Restore(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Get(e.ns, "half"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Get of a deleted task: %v", err)
	}
	if _, err := os.Stat(sh.Bundle); !os.IsNotExist(err) {
		t.Fatalf("bundle: %v", err)
	}
	if proc.Alive(pid) {
		t.Fatalf("shim %d still alive", pid)
	}
	if got := rec.topics(e.ns, "half"); len(got) != 0 {
		t.Fatalf("events %v", got)
	}
}

// A daemon killed after the shim deleted the container but before it shut
// the shim down leaves a live shim without a container. The next daemon's
// Restore finishes that delete before it answers for the task: the task is
// fully gone (Get, Has, bundle, shim), never a task that Get shows but no
// State call can answer, which kept its container from being deleted.
func TestRestoreFinishesDeleteOfLiveShim(t *testing.T) {
	for _, tc := range []struct {
		name string
		// refuse keeps the first daemon from forwarding the shim's
		// TaskDelete, as a daemon killed before it got to it.
		refuse bool
	}{
		{name: "delete-unforwarded", refuse: true},
		{name: "delete-forwarded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "sv-mid")
			rec1 := newRecorder()
			var h supervisor.EventHandler = rec1
			if tc.refuse {
				h = refuseDelete{rec1}
			}
			s1 := e.supervisor(nil, func(c *supervisor.Config) { c.Events = h })
			sh := e.create(s1, "mid", "true")
			start(t, sh)
			wait(t, sh)
			pid := shimPid(t, sh)
			if _, err := sh.Task().Delete(ctx(t), &shimapi.DeleteRequest{Id: "mid"}); err != nil {
				t.Fatal(err)
			}
			if !tc.refuse {
				eventually(t, time.Minute, "TaskDelete forwarded", func() bool {
					return rec1.count(e.ns, "mid", topics.TaskDelete) == 1
				})
			}
			s1.Close()

			rec2 := newRecorder()
			s2 := e.supervisor(rec2)
			if err := s2.Restore(ctx(t)); err != nil {
				t.Fatal(err)
			}
			if _, err := s2.Get(e.ns, "mid"); !errors.Is(err, errdefs.ErrNotFound) {
				t.Fatalf("Get of a task whose shim had deleted it: %v", err)
			}
			if s2.Has(e.ns, "mid") {
				t.Fatal("Has still counts a task whose shim had deleted it")
			}
			if _, err := s2.Delete(ctx(t), e.ns, "mid"); !errors.Is(err, errdefs.ErrNotFound) {
				t.Fatalf("Delete of a deleted task: %v", err)
			}
			if _, err := os.Stat(sh.Bundle); !os.IsNotExist(err) {
				t.Fatalf("bundle: %v", err)
			}
			eventually(t, time.Minute, "shim exits", func() bool { return !proc.Alive(pid) })
			exits := rec1.count(e.ns, "mid", topics.TaskExit) + rec2.count(e.ns, "mid", topics.TaskExit)
			deletes := rec1.count(e.ns, "mid", topics.TaskDelete) + rec2.count(e.ns, "mid", topics.TaskDelete)
			if exits != 1 {
				t.Errorf("exit published %d times: %v then %v", exits, rec1.topics(e.ns, "mid"), rec2.topics(e.ns, "mid"))
			}
			// Unforwarded, the shim still holds its TaskDelete and gives it
			// to the next daemon; forwarded, the next daemon cannot tell
			// whether the ack arrived, and may publish it again.
			if deletes < 1 || tc.refuse && deletes != 1 {
				t.Errorf("TaskDelete published %d times: %v then %v", deletes, rec1.topics(e.ns, "mid"), rec2.topics(e.ns, "mid"))
			}
		})
	}
}

// refuseDelete fails every /tasks/delete as an exchange that is down, so
// the shim keeps the event unacked; it records the rest.
type refuseDelete struct{ *recorder }

func (r refuseDelete) Forward(ctx context.Context, ns, id string, env *shimapi.Envelope) error {
	if env.Topic == topics.TaskDelete {
		return fmt.Errorf("exchange unavailable (test)")
	}
	return r.recorder.Forward(ctx, ns, id, env)
}

// invalidStart refuses /tasks/start as an exchange refuses an event it
// cannot publish, and records the rest.
type invalidStart struct{ *recorder }

func (r invalidStart) Forward(ctx context.Context, ns, id string, env *shimapi.Envelope) error {
	if env.Topic == "/tasks/start" {
		return fmt.Errorf("test: %w", errdefs.ErrInvalidArgument)
	}
	return r.recorder.Forward(ctx, ns, id, env)
}

// An event the handler refuses as invalid is dropped, not retried forever:
// the events after it, the exit included, still get through.
func TestInvalidEventDoesNotBlockLaterOnes(t *testing.T) {
	e := newEnv(t, "sv-inv")
	rec := newRecorder()
	s := e.supervisor(nil, func(c *supervisor.Config) { c.Events = invalidStart{rec} })
	sh := e.create(s, "inv", "sh", "-c", "exit 4")
	start(t, sh)
	wait(t, sh)
	eventually(t, time.Minute, "exit forwarded after a refused start", func() bool {
		return rec.count(e.ns, "inv", "/tasks/exit") == 1
	})
}

// TestRestoreLeavesForeignFolders: a folder in the state folder that is no
// bundle (no config.json) is neither reported as a task nor removed.
func TestRestoreLeavesForeignFolders(t *testing.T) {
	e := newEnv(t, "foreign")
	foreign := filepath.Join(e.stateDir, "foreign", "not-a-bundle")
	if err := os.MkdirAll(foreign, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(foreign, "data"), []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := e.supervisor(newRecorder())
	if err := s.Restore(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("foreign", "not-a-bundle"); err == nil {
		t.Error("a folder without config.json was taken for a task")
	}
	if data, err := os.ReadFile(filepath.Join(foreign, "data")); err != nil || string(data) != "keep me" {
		t.Errorf("the foreign folder was touched: %q, %v", data, err)
	}
}

// A daemon killed before Create returned leaves a bundle still marked
// creating; the next daemon removes the task, its shim and its container
// (the caller was never told of it), and publishes nothing. Here the
// daemon "dies" just after the shim created the container, with the mark
// put back: the latest moment the mark can be seen.
func TestRestoreUndoesUnfinishedCreate(t *testing.T) {
	e := newEnv(t, "sv-creating")
	s1 := e.supervisor(newRecorder())
	sh := e.create(s1, "half", "sleep", "100")
	pid := shimPid(t, sh)
	state, err := sh.Task().State(ctx(t), &shimapi.StateRequest{Id: "half"})
	if err != nil {
		t.Fatal(err)
	}
	s1.Close()
	if err := os.WriteFile(filepath.Join(sh.Bundle, "creating"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	s2 := e.supervisor(rec)
	if err := s2.Restore(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Get(e.ns, "half"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Get of a task whose create did not finish: %v", err)
	}
	if _, err := os.Stat(sh.Bundle); !os.IsNotExist(err) {
		t.Fatalf("bundle: %v", err)
	}
	e.assertGone("half", pid, int(state.Pid))
	if got := rec.topics(e.ns, "half"); len(got) != 0 {
		t.Fatalf("events %v", got)
	}
	// The name is free again.
	sh = e.create(s2, "half", "true")
	start(t, sh)
	if got := wait(t, sh); got != 0 {
		t.Fatalf("exit %d", got)
	}
}

// A daemon killed right after it made the bundle folder leaves only the
// creating mark; the next daemon removes the folder.
func TestRestoreRemovesBareCreatingBundle(t *testing.T) {
	e := newEnv(t, "sv-bare")
	bundle := e.bundle("bare")
	if err := os.MkdirAll(bundle, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "creating"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := e.supervisor(newRecorder())
	if err := s.Restore(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bundle); !os.IsNotExist(err) {
		t.Fatalf("bundle: %v", err)
	}
	if _, err := s.Get(e.ns, "bare"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Get: %v", err)
	}
	// Killed even before the mark: an empty folder, removed too, so the
	// id can be created again.
	empty := e.bundle("empty")
	if err := os.MkdirAll(empty, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := s.Restore(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(empty); !os.IsNotExist(err) {
		t.Fatalf("empty bundle folder: %v", err)
	}
	sh := e.create(s, "empty", "true")
	start(t, sh)
	if got := wait(t, sh); got != 0 {
		t.Fatalf("exit %d", got)
	}
}

// A removal that failed half-way (a daemon killed during a Create restarts,
// removes the bundle, and a shim's runtime call still writes into it:
// "directory not empty") leaves a bundle without config.json whose shim
// may still run. The next Restore finishes it: the shim and every process
// it started are killed, and the folder goes.
func TestRestoreHalfRemovedBundle(t *testing.T) {
	e := newEnv(t, "sv-half")
	bundle := e.bundle("half")
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{shimapi.LogFileName, "runtime.log", shimapi.DeletedName} {
		if err := os.WriteFile(filepath.Join(bundle, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The "shim": a serving berth-shim's command line for the bundle,
	// with a child that goes on writing files into the bundle, as a
	// runc create that outlived its daemon does.
	script := filepath.Join(e.scratch, "serve")
	writerPid := filepath.Join(e.scratch, "writer.pid")
	os.WriteFile(script, []byte(`(i=0; while :; do i=$((i+1)); : > "$2/written.$i"; sleep 0.01; done) &
echo $! > `+writerPid+`
wait
`), 0o700)
	fake := exec.Command("/bin/sh", "serve", "--bundle", bundle)
	fake.Dir = e.scratch
	fake.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := fake.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-fake.Process.Pid, syscall.SIGKILL) })
	os.WriteFile(filepath.Join(bundle, shimapi.PidFileName), []byte(strconv.Itoa(fake.Process.Pid)), 0o600)
	var writer int
	eventually(t, time.Minute, "the writer running", func() bool {
		data, err := os.ReadFile(writerPid)
		writer, _ = strconv.Atoi(strings.TrimSpace(string(data)))
		return err == nil && writer > 0
	})

	rec := newRecorder()
	s := e.supervisor(rec)
	if err := s.Restore(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bundle); !errors.Is(err, fs.ErrNotExist) {
		entries, _ := os.ReadDir(bundle)
		t.Errorf("the half-removed bundle is still there (%v), holding %d entries", err, len(entries))
	}
	// The fake is our child: reaped here, not a zombie that alive
	// counts. Bounded: a fake nobody killed waits for its writer forever.
	waited := make(chan struct{})
	go func() { fake.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatalf("the shim (%d) still runs", fake.Process.Pid)
	}
	if proc.Alive(writer) {
		t.Errorf("the process the shim started (%d) still runs", writer)
	}
	if _, err := s.Get(e.ns, "half"); !errdefs.IsNotFound(err) {
		t.Errorf("Get of the removed task: %v, want not found", err)
	}
	if got := rec.of(e.ns, "half"); len(got) != 0 {
		t.Errorf("events of the removed task: %v", got)
	}
}
