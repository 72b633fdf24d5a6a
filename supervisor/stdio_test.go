package supervisor_test

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/io/cio"
	"github.com/berthrt/berth/shimapi"
	"github.com/berthrt/berth/supervisor"
)

// fifoTask creates task id running args with stdio FIFOs that a client's
// Creator made: in the daemon's own FIFO dir (StateDir/.fifo) when own,
// else in a folder of the test's. It returns the shim and the FIFO folder.
func (e *env) fifoTask(s *supervisor.Supervisor, id string, own bool, args ...string) (*supervisor.Shim, string) {
	e.t.Helper()
	root := filepath.Join(e.scratch, "fifo")
	if own {
		root = filepath.Join(e.stateDir, filepath.Base(cio.DefaultFIFODir))
	}
	set, err := cio.NewFIFOSetInDir(root, id, false)
	if err != nil {
		e.t.Fatal(err)
	}
	opts := e.opts(id, args...)
	opts.Stdio = &shimapi.Stdio{Stdin: set.Stdin, Stdout: set.Stdout, Stderr: set.Stderr}
	sh, err := s.Create(ctx(e.t), e.ns, id, opts)
	if err != nil {
		e.t.Fatalf("create %s: %v", id, err)
	}
	if !proto.Equal(sh.Stdio(), opts.Stdio) {
		e.t.Fatalf("Stdio() = %v, want %v", sh.Stdio(), opts.Stdio)
	}
	return sh, filepath.Dir(set.Stdout)
}

func assertNoFolder(t *testing.T, dir, why string) {
	t.Helper()
	if _, err := os.Lstat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s: FIFO folder %s: %v, want it removed", why, dir, err)
	}
}

func assertFolder(t *testing.T, dir, why string) {
	t.Helper()
	if _, err := os.Lstat(dir); err != nil {
		t.Errorf("%s: FIFO folder %s: %v, want it kept (not the daemon's)", why, dir, err)
	}
}

// Deleting a task removes the FIFOs a client made for it in the daemon's
// FIFO dir, never those elsewhere.
func TestDeleteRemovesOwnFIFOs(t *testing.T) {
	e := newEnv(t, "sv-fifo")
	s := e.supervisor(newRecorder())
	for _, own := range []bool{true, false} {
		id := map[bool]string{true: "own", false: "elsewhere"}[own]
		sh, dir := e.fifoTask(s, id, own, "true")
		start(t, sh)
		wait(t, sh)
		if _, err := s.Delete(ctx(t), e.ns, id); err != nil {
			t.Fatal(err)
		}
		if own {
			assertNoFolder(t, dir, "delete")
		} else {
			assertFolder(t, dir, "delete")
		}
	}
}

// A task whose shim is gone keeps reporting its stdio, also to the next
// daemon, and its delete removes the daemon's FIFOs.
func TestStoppedTaskKeepsStdio(t *testing.T) {
	e := newEnv(t, "sv-fifo-stop")
	s1 := e.supervisor(newRecorder())
	sh, dir := e.fifoTask(s1, "gone", true, "sleep", "1000")
	start(t, sh)
	if err := syscall.Kill(shimPid(t, sh), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "death noticed", func() bool {
		_, ok := sh.Exited()
		return ok
	})
	want := sh.Stdio()
	s1.Close()

	s2 := e.supervisor(newRecorder())
	if err := s2.Restore(ctx(t)); err != nil {
		t.Fatal(err)
	}
	sh2, err := s2.Get(e.ns, "gone")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := sh2.Exited(); !ok {
		t.Fatal("restored task is not stopped")
	}
	if got := sh2.Stdio(); !proto.Equal(got, want) || got.GetStdout() == "" {
		t.Fatalf("restored stopped task: Stdio() = %v, want %v", got, want)
	}
	if _, err := s2.Delete(ctx(t), e.ns, "gone"); err != nil {
		t.Fatal(err)
	}
	assertNoFolder(t, dir, "delete of a stopped task")
}

// A daemon killed inside a delete (after the shim deleted the container and
// the TaskDelete was out) leaves the removal to the next daemon's Restore,
// which removes the FIFOs too: the client, whose delete failed, never
// learns their paths again.
func TestRestoreFinishesDeleteRemovesOwnFIFOs(t *testing.T) {
	e := newEnv(t, "sv-fifo-fin")
	s1 := e.supervisor(newRecorder())
	sh, dir := e.fifoTask(s1, "cut", true, "true")
	start(t, sh)
	wait(t, sh)
	if _, err := sh.Task().Delete(ctx(t), &shimapi.DeleteRequest{Id: "cut"}); err != nil {
		t.Fatal(err)
	}
	s1.Close()
	// What deleteLive persists once the TaskDelete is out.
	if err := os.WriteFile(filepath.Join(sh.Bundle, "task-deleted"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s2 := e.supervisor(newRecorder())
	if err := s2.Restore(ctx(t)); err != nil {
		t.Fatal(err)
	}
	assertNoFolder(t, dir, "restore finishing a delete")
	if _, err := os.Stat(sh.Bundle); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("bundle: %v", err)
	}
}

// A Create that fails removes the daemon's FIFOs with the bundle: its
// client gets the error, but one whose connection a crash cut does not.
func TestFailedCreateRemovesOwnFIFOs(t *testing.T) {
	e := newEnv(t, "sv-fifo-fail")
	s := e.supervisor(newRecorder())
	root := filepath.Join(e.stateDir, filepath.Base(cio.DefaultFIFODir))
	set, err := cio.NewFIFOSetInDir(root, "bad", false)
	if err != nil {
		t.Fatal(err)
	}
	opts := e.opts("bad", "/no/such/binary")
	opts.Runtime = "/no/such/runtime"
	opts.Stdio = &shimapi.Stdio{Stdin: set.Stdin, Stdout: set.Stdout, Stderr: set.Stderr}
	if _, err := s.Create(ctx(t), e.ns, "bad", opts); err == nil {
		t.Fatal("create with a missing runtime succeeded")
	}
	assertNoFolder(t, filepath.Dir(set.Stdout), "failed create")
}

// execRequest is an exec of args in task sh with FIFOs a Creator made in
// the daemon's FIFO dir; it returns the request and the FIFO folder.
func (e *env) execRequest(sh *supervisor.Shim, execID string, args ...string) (*shimapi.ExecRequest, string) {
	e.t.Helper()
	set, err := cio.NewFIFOSetInDir(filepath.Join(e.stateDir, filepath.Base(cio.DefaultFIFODir)), execID, false)
	if err != nil {
		e.t.Fatal(err)
	}
	spec, err := json.Marshal(&specs.Process{Args: args, Cwd: "/", Env: []string{"PATH=/bin:/usr/bin"}})
	if err != nil {
		e.t.Fatal(err)
	}
	return &shimapi.ExecRequest{Id: sh.ID, ExecId: execID, Spec: spec,
		Stdio: &shimapi.Stdio{Stdin: set.Stdin, Stdout: set.Stdout, Stderr: set.Stderr}}, filepath.Dir(set.Stdout)
}

// An exec's FIFOs in the daemon's FIFO dir go when the exec is deleted,
// also when the shim had deleted it already (a reply a crash lost), and
// with the task when nobody deleted the exec. A refused Exec of a running
// exec's id leaves that exec's record alone.
func TestExecFIFOsRemoved(t *testing.T) {
	e := newEnv(t, "sv-fifo-exec")
	s := e.supervisor(newRecorder())
	sh := e.create(s, "box", "sleep", "1000")
	start(t, sh)

	req, dir := e.execRequest(sh, "e-1", "true")
	if err := sh.Exec(ctx(t), req); err != nil {
		t.Fatal(err)
	}
	dup, dupDir := e.execRequest(sh, "e-1", "true")
	if err := sh.Exec(ctx(t), dup); err == nil {
		t.Fatal("a second Exec of one id succeeded")
	}
	if _, err := sh.Task().Start(ctx(t), &shimapi.StartRequest{Id: sh.ID, ExecId: "e-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := sh.Task().Wait(ctx(t), &shimapi.WaitRequest{Id: sh.ID, ExecId: "e-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := sh.DeleteProcess(ctx(t), &shimapi.DeleteRequest{Id: sh.ID, ExecId: "e-1"}); err != nil {
		t.Fatal(err)
	}
	assertNoFolder(t, dir, "exec delete")
	// The refused one's folder is its client's to remove.
	assertFolder(t, dupDir, "refused exec")

	// Deleted by the shim, but the daemon died before it removed
	// anything: the next DeleteProcess gets NotFound and removes them.
	req, dir = e.execRequest(sh, "e2", "true")
	if err := sh.Exec(ctx(t), req); err != nil {
		t.Fatal(err)
	}
	if _, err := sh.Task().Delete(ctx(t), &shimapi.DeleteRequest{Id: sh.ID, ExecId: "e2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := sh.DeleteProcess(ctx(t), &shimapi.DeleteRequest{Id: sh.ID, ExecId: "e2"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("DeleteProcess of an exec the shim deleted: %v, want not found", err)
	}
	assertNoFolder(t, dir, "exec delete whose reply was lost")

	// Never deleted: the task's delete removes them.
	req, dir = e.execRequest(sh, "e3", "sleep", "1000")
	if err := sh.Exec(ctx(t), req); err != nil {
		t.Fatal(err)
	}
	if _, err := sh.Task().Kill(ctx(t), &shimapi.KillRequest{Id: sh.ID, Signal: 9, All: true}); err != nil {
		t.Fatal(err)
	}
	wait(t, sh)
	if _, err := s.Delete(ctx(t), e.ns, "box"); err != nil {
		t.Fatal(err)
	}
	assertNoFolder(t, dir, "task delete with an exec never deleted")
}

// A daemon's start removes FIFO folders of its FIFO dir that no task will
// ever remove (a client that crashed before its Create), and nothing else:
// not a task's, not a young one, not one a process holds open, not one
// named otherwise, not a file.
func TestRestoreSweepsLeftFIFOFolders(t *testing.T) {
	e := newEnv(t, "sv-fifo-sweep")
	s1 := e.supervisor(newRecorder())
	live, liveDir := e.fifoTask(s1, "live", true, "sleep", "1000")
	start(t, live)
	s1.Close()

	root := filepath.Join(e.stateDir, filepath.Base(cio.DefaultFIFODir))
	old := time.Now().Add(-time.Hour)
	folder := func(id string, age time.Time) string {
		t.Helper()
		set, err := cio.NewFIFOSetInDir(root, id, false)
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Dir(set.Stdout)
		if err := os.Chtimes(dir, age, age); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	gone := folder("gone", old)
	young := folder("young", time.Now())
	held := folder("held", old)
	f, err := os.OpenFile(filepath.Join(held, "stdout"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	other := filepath.Join(root, "not-a-creator")
	aFile := filepath.Join(root, "file-12", "stdout")
	for _, d := range []string{other, filepath.Dir(aFile)} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(aFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{liveDir, other, filepath.Dir(aFile)} {
		if err := os.Chtimes(d, old, old); err != nil {
			t.Fatal(err)
		}
	}

	s2 := e.supervisor(newRecorder())
	if err := s2.Restore(ctx(t)); err != nil {
		t.Fatal(err)
	}
	assertNoFolder(t, gone, "sweep of a folder nothing refers to")
	for _, d := range []string{young, held, liveDir, other} {
		assertFolder(t, d, "sweep")
	}
	if _, err := os.Stat(aFile); err != nil {
		t.Errorf("sweep removed a file: %v", err)
	}
}
