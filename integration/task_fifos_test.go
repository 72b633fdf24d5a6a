package integration

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/images/archive"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/io/cio"
	"github.com/berthrt/berth/oci"
	tasksv1 "github.com/berthrt/berth/proto/tasks/v1"
	"github.com/berthrt/berth/shimapi"
)

// TestTaskDeleteRemovesUnattachedFIFOs: a task created by one client,
// which then goes away without deleting it (as a crashed client), and
// deleted by another that loaded it without attaching: its FIFOs and their
// folder go (found by the fault-injection run, on the chaos branch: they stayed
// forever).
func TestTaskDeleteRemovesUnattachedFIFOs(t *testing.T) {
	testutil.RequireRoot(t, "runc", "busybox")
	arch, _ := layeredArchive(t)
	d := newDaemon(t)
	ctx := d.nsContext("fifos")
	c := d.client(t, "fifos")
	imgs, err := c.Import(ctx, bytes.NewReader(arch), archive.WithUnpack("overlayfs"))
	if err != nil {
		t.Fatal(err)
	}
	ctr, err := c.NewContainer(ctx, "f1", client.WithImage(imgs[0]), client.WithSnapshotter("overlayfs"),
		client.WithNewSnapshot("f1", imgs[0]), client.WithNewSpec(oci.WithImageConfig(imgs[0]), oci.WithProcessArgs("sleep", "600")))
	if err != nil {
		t.Fatal(err)
	}
	var out testutil.Buffer
	task, err := ctr.NewTask(ctx, d.creator(nil, &out, &out))
	if err != nil {
		t.Fatal(err)
	}
	fifoDir := filepath.Join(d.state, filepath.Base(cio.DefaultFIFODir))
	if entries, _ := os.ReadDir(fifoDir); len(entries) != 1 {
		t.Fatalf("FIFO folders: %v, want one", entries)
	}
	_ = task // the first client never deletes it

	other := d.client(t, "fifos")
	ctr2, err := other.LoadContainer(ctx, "f1")
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := ctr2.Task(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loaded.Delete(ctx, client.WithProcessKill); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(fifoDir); len(entries) != 0 {
		t.Errorf("FIFO folders after the delete: %v, want none", entries)
	}
	if err := ctr2.Delete(ctx, client.WithSnapshotCleanup); err != nil {
		t.Fatal(err)
	}
}

// TestTaskDeleteCutByDaemonKill: berthd is killed inside a task delete,
// after the shim deleted the container: the client's Delete fails, and the
// restarted daemon finishes the delete on its own, so the client never
// learns the FIFO paths again. The daemon removes the FIFOs it recorded
// for the task in its own FIFO folder; the client's later Delete gets
// NotFound and closes its IO; berthd check finds nothing (found by the
// long fault-injection run: fifo-folder-left). A stopped task, whose shim
// is gone, still reports its stdio.
func TestTaskDeleteCutByDaemonKill(t *testing.T) {
	testutil.RequireRoot(t, "runc", "busybox")
	arch, _ := layeredArchive(t)
	d := newDaemon(t)
	const ns = "fifocut"
	ctx := d.nsContext(ns)
	c := d.client(t, ns)
	imgs, err := c.Import(ctx, bytes.NewReader(arch), archive.WithUnpack("overlayfs"))
	if err != nil {
		t.Fatal(err)
	}
	fifoDir := filepath.Join(d.state, filepath.Base(cio.DefaultFIFODir))
	newTask := func(id string, args ...string) (client.Container, client.Task) {
		t.Helper()
		ctr, err := c.NewContainer(ctx, id, client.WithImage(imgs[0]), client.WithSnapshotter("overlayfs"),
			client.WithNewSnapshot(id, imgs[0]), client.WithNewSpec(oci.WithImageConfig(imgs[0]), oci.WithProcessArgs(args...)))
		if err != nil {
			t.Fatal(err)
		}
		task, err := ctr.NewTask(ctx, d.creator(nil, io.Discard, io.Discard))
		if err != nil {
			t.Fatal(err)
		}
		return ctr, task
	}
	folders := func() []string {
		entries, _ := os.ReadDir(fifoDir)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return names
	}

	// A task whose shim is killed is stopped and keeps its stdio.
	_, stopped := newTask("stopped", "sleep", "600")
	r, err := c.TaskService().Get(ctx, &tasksv1.GetRequest{ContainerId: "stopped"})
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(int(r.Process.ShimPid), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var got *tasksv1.Process
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		r, err := c.TaskService().Get(ctx, &tasksv1.GetRequest{ContainerId: "stopped"})
		if err == nil && r.Process.Status == shimapi.Status_STATUS_STOPPED {
			got = r.Process
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task with a killed shim: %v, %v; want it stopped", r, err)
		}
	}
	if want := stopped.IO().Config(); got.GetStdio().GetStdout() != want.Stdout || got.GetStdio().GetStderr() != want.Stderr {
		t.Errorf("stopped task reports stdio %v, want %+v", got.GetStdio(), want)
	}

	ctr, task := newTask("cut", "true")
	exitc, err := task.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	<-exitc
	if len(folders()) != 2 {
		t.Fatalf("FIFO folders %v, want two", folders())
	}
	d.kill()
	// What the killed daemon's Delete had done: the shim deleted the
	// container.
	sc, st, err := shimapi.Connect(ctx, d.bundle(ns, "cut"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Delete(ctx, &shimapi.DeleteRequest{Id: "cut"}); err != nil {
		t.Fatal(err)
	}
	sc.Close()
	if _, err := task.Delete(ctx); err == nil {
		t.Fatal("Delete with the daemon down succeeded")
	}
	d.start()
	c = d.client(t, ns)
	if _, err := c.TaskService().Get(ctx, &tasksv1.GetRequest{ContainerId: "cut"}); !errdefs.IsNotFound(err) {
		t.Fatalf("task after the restart: %v, want not found (the restore finished its delete)", err)
	}
	if f := folders(); len(f) != 1 || !strings.HasPrefix(f[0], "stopped-") {
		t.Errorf("FIFO folders after the restore finished the delete: %v, want only the stopped task's", f)
	}
	// The first client's retry: the task is gone.
	if _, err := task.Delete(ctx); !errdefs.IsNotFound(err) {
		t.Errorf("Delete again: %v, want not found", err)
	}
	if err := ctr.Delete(ctx, client.WithSnapshotCleanup); err != nil {
		t.Fatal(err)
	}

	// Loaded by another client without attaching, the stopped task's
	// delete removes its FIFOs too.
	sctr, err := c.LoadContainer(ctx, "stopped")
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := sctr.Task(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loaded.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if f := folders(); len(f) != 0 {
		t.Errorf("FIFO folders after every delete: %v, want none", f)
	}
	if err := sctr.Delete(ctx, client.WithSnapshotCleanup); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GarbageCollect(ctx); err != nil {
		t.Fatal(err)
	}
	d.kill()
	if out, code := d.check(t); code != 0 {
		t.Errorf("berthd check after every delete: exit %d\n%s", code, out)
	}
}

// TestExecDeleteCutByDaemonKill: berthd is killed inside an exec's delete,
// after the shim deleted the exec, and the exec's client is gone. The
// exec's FIFO folder is recorded with the task: berthd check does not
// count it as left, and the task's delete by another client removes it.
func TestExecDeleteCutByDaemonKill(t *testing.T) {
	testutil.RequireRoot(t, "runc", "busybox")
	arch, _ := layeredArchive(t)
	d := newDaemon(t)
	const ns = "execcut"
	ctx := d.nsContext(ns)
	c := d.client(t, ns)
	imgs, err := c.Import(ctx, bytes.NewReader(arch), archive.WithUnpack("overlayfs"))
	if err != nil {
		t.Fatal(err)
	}
	ctr, err := c.NewContainer(ctx, "box", client.WithImage(imgs[0]), client.WithSnapshotter("overlayfs"),
		client.WithNewSnapshot("box", imgs[0]), client.WithNewSpec(oci.WithImageConfig(imgs[0]), oci.WithProcessArgs("sleep", "600")))
	if err != nil {
		t.Fatal(err)
	}
	task, err := ctr.NewTask(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	spec, err := ctr.Spec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pspec := *spec.Process
	pspec.Args = []string{"true"}
	// The exec's client made its FIFOs and then crashed: nothing holds
	// them open, nobody will remove them.
	fifoDir := filepath.Join(d.state, filepath.Base(cio.DefaultFIFODir))
	crashed := func(id string) (cio.IO, error) {
		set, err := cio.NewFIFOSetInDir(fifoDir, id, false)
		if err != nil {
			return nil, err
		}
		return crashedIO{set.Config}, nil
	}
	p, err := task.Exec(ctx, "ex-1", &pspec, crashed)
	if err != nil {
		t.Fatal(err)
	}
	exitc, err := p.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	<-exitc
	entries, _ := os.ReadDir(fifoDir)
	if len(entries) != 1 || !strings.HasPrefix(entries[0].Name(), "ex-1-") {
		t.Fatalf("FIFO folders %v, want the exec's", entries)
	}
	d.kill()
	sc, st, err := shimapi.Connect(ctx, d.bundle(ns, "box"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Delete(ctx, &shimapi.DeleteRequest{Id: "box", ExecId: "ex-1"}); err != nil {
		t.Fatal(err)
	}
	sc.Close()
	if out, code := d.check(t); code != 0 {
		t.Errorf("berthd check with the exec's FIFOs recorded: exit %d\n%s", code, out)
	}
	d.start()
	other := d.client(t, ns)
	octr, err := other.LoadContainer(ctx, "box")
	if err != nil {
		t.Fatal(err)
	}
	otask, err := octr.Task(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := otask.Delete(ctx, client.WithProcessKill); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(fifoDir); len(entries) != 0 {
		t.Errorf("FIFO folders after the task's delete: %v, want none", entries)
	}
	if err := octr.Delete(ctx, client.WithSnapshotCleanup); err != nil {
		t.Fatal(err)
	}
}

// crashedIO is the IO of a client that made its FIFOs and crashed.
type crashedIO struct{ config cio.Config }

func (c crashedIO) Config() cio.Config { return c.config }
func (crashedIO) Cancel()              {}
func (crashedIO) Wait()                {}
func (crashedIO) Close() error         { return nil }
