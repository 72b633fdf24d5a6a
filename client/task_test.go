package client

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/io/cio"
	tasksv1 "github.com/berthrt/berth/proto/tasks/v1"
	"github.com/berthrt/berth/shimapi"
)

// shimOutput is an onCreate hook that writes line to the process's stdout
// FIFO the way the shim does (non-blocking open: the reader must be there
// already) and closes it.
func shimOutput(t *testing.T, line string) func(string, *shimapi.Stdio) {
	return func(_ string, stdio *shimapi.Stdio) {
		f, err := os.OpenFile(stdio.Stdout, os.O_WRONLY|unix.O_NONBLOCK, 0)
		if err != nil {
			t.Errorf("shim open %s: %v (no reader before Create?)", stdio.Stdout, err)
			return
		}
		f.WriteString(line)
		f.Close()
	}
}

func newTestContainer(t *testing.T) (Container, *fakeDaemon) {
	t.Helper()
	c, f := connect(t)
	ctr, err := c.NewContainer(context.Background(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	return ctr, f
}

func receive(t *testing.T, exitc <-chan ExitStatus) ExitStatus {
	t.Helper()
	select {
	case s := <-exitc:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no exit status")
	}
	return ExitStatus{}
}

func TestTaskLifecycle(t *testing.T) {
	ctr, f := newTestContainer(t)
	ctx := context.Background()
	f.tasks.onCreate = shimOutput(t, "hello")
	var out testutil.Buffer
	fifoDir := t.TempDir()
	task, err := ctr.NewTask(ctx, cio.NewCreator(cio.WithFIFODir(fifoDir), cio.WithStreams(nil, &out, nil)),
		WithRootFS(Mount{Type: "bind", Source: "/srv", Options: []string{"rbind"}}))
	if err != nil {
		t.Fatal(err)
	}
	if task.ID() != "c1" || task.Pid() != 4242 {
		t.Errorf("ID %q Pid %d", task.ID(), task.Pid())
	}
	create := f.tasks.requestsOf(func(r any) bool { _, ok := r.(*tasksv1.CreateTaskRequest); return ok })[0].(*tasksv1.CreateTaskRequest)
	if len(create.Rootfs) != 1 || create.Rootfs[0].Source != "/srv" || create.Stdio.Stdout == "" || create.Stdio.Stdin != "" {
		t.Errorf("Create request = %v", create)
	}

	exitc, err := task.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := task.Status(ctx); err != nil || st.Status != Running {
		t.Errorf("Status = %+v, %v", st, err)
	}
	if _, err := task.Delete(ctx); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("Delete while running: %v, want ErrFailedPrecondition", err)
	}
	f.tasks.exit("c1", "", 3)
	s := receive(t, exitc)
	if s.ExitCode() != 3 || s.Error() != nil || !s.ExitTime().Equal(time.Unix(1700000000, 0)) {
		t.Errorf("exit = %+v", s)
	}
	if st, err := task.Status(ctx); err != nil || st.Status != Stopped || st.ExitStatus != 3 {
		t.Errorf("Status = %+v, %v", st, err)
	}

	ds, err := task.Delete(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ds.ExitCode() != 3 {
		t.Errorf("Delete status = %+v", ds)
	}
	if out.String() != "hello" {
		t.Errorf("stdout = %q", out.String())
	}
	if entries, _ := os.ReadDir(fifoDir); len(entries) != 0 {
		t.Errorf("FIFOs left after Delete: %v", entries)
	}
}

func TestNewTaskFailureCleansUp(t *testing.T) {
	ctr, _ := newTestContainer(t)
	ctx := context.Background()
	fifoDir := t.TempDir()
	creator := cio.NewCreator(cio.WithFIFODir(fifoDir), cio.WithStreams(nil, &testutil.Buffer{}, nil))
	if _, err := ctr.NewTask(ctx, creator); err != nil {
		t.Fatal(err)
	}
	if _, err := ctr.NewTask(ctx, creator); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("second NewTask: %v, want ErrAlreadyExists", err)
	}
	if entries, _ := os.ReadDir(fifoDir); len(entries) != 1 {
		t.Errorf("the failed NewTask left its FIFOs: %d folders, want 1", len(entries))
	}
}

func TestWaitChannel(t *testing.T) {
	ctr, _ := newTestContainer(t)
	task, err := ctr.NewTask(context.Background(), cio.NullIO)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		exitc, err := task.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		s := receive(t, exitc)
		if !errors.Is(s.Error(), context.Canceled) || s.ExitCode() != UnknownExitStatus {
			t.Errorf("status after cancel = %+v", s)
		}
		select {
		case s := <-exitc:
			t.Errorf("a second status: %+v", s)
		case <-time.After(50 * time.Millisecond):
		}
	})
	t.Run("error class", func(t *testing.T) {
		p, err := task.LoadProcess(context.Background(), "missing", nil)
		if !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("LoadProcess missing: %v, %v", p, err)
		}
		ghost := newProcess(ctr.(*container).client, "c1", "ghost", 0, nil)
		exitc, _ := ghost.Wait(context.Background())
		if s := receive(t, exitc); !errors.Is(s.Error(), errdefs.ErrNotFound) {
			t.Errorf("wait for a missing process: %+v", s)
		}
	})
}

func TestAttachAfterRestart(t *testing.T) {
	ctr, f := newTestContainer(t)
	ctx := context.Background()
	// The first client made the FIFOs and went away.
	set, err := cio.NewFIFOSetInDir(t.TempDir(), "c1", false)
	if err != nil {
		t.Fatal(err)
	}
	f.tasks.add("c1", "", &shimapi.Stdio{Stdin: set.Stdin, Stdout: set.Stdout, Stderr: set.Stderr}, 4242)

	var out testutil.Buffer
	task, err := ctr.Task(ctx, cio.NewAttach(cio.WithStreams(nil, &out, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if task.Pid() != 4242 || task.IO() == nil || task.IO().Config().Stdout != set.Stdout {
		t.Fatalf("attached task pid %d io %v", task.Pid(), task.IO())
	}
	shimOutput(t, "again")("", &shimapi.Stdio{Stdout: set.Stdout})
	task.IO().Wait()
	if out.String() != "again" {
		t.Errorf("stdout = %q", out.String())
	}
	if _, err := task.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(set.Stdout)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("FIFO folder left after Delete: %v", err)
	}

	if _, err := ctr.Task(ctx, nil); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Task without a task: %v", err)
	}
}

func TestExec(t *testing.T) {
	ctr, f := newTestContainer(t)
	ctx := context.Background()
	task, err := ctr.NewTask(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	f.tasks.onCreate = shimOutput(t, "exec out")
	var out testutil.Buffer
	p, err := task.Exec(ctx, "sh", &specs.Process{Args: []string{"sh", "-c", "true"}, Cwd: "/"},
		cio.NewCreator(cio.WithFIFODir(t.TempDir()), cio.WithStreams(nil, &out, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if p.ID() != "sh" || p.Pid() != 0 {
		t.Errorf("exec ID %q pid %d before Start", p.ID(), p.Pid())
	}
	exec := f.tasks.requestsOf(func(r any) bool { _, ok := r.(*tasksv1.ExecProcessRequest); return ok })[0].(*tasksv1.ExecProcessRequest)
	if !bytes.Contains(exec.Spec, []byte(`"args":["sh","-c","true"]`)) {
		t.Errorf("exec spec = %s", exec.Spec)
	}
	exitc, _ := p.Wait(ctx)
	if err := p.Start(ctx); err != nil || p.Pid() != 5000 {
		t.Fatalf("Start: %v, pid %d", err, p.Pid())
	}
	f.tasks.exit("c1", "sh", 0)
	if s := receive(t, exitc); s.ExitCode() != 0 || s.Error() != nil {
		t.Errorf("exec exit = %+v", s)
	}
	if _, err := p.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if out.String() != "exec out" {
		t.Errorf("exec stdout = %q", out.String())
	}
	if _, err := task.Exec(ctx, "x", nil, nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("nil spec: %v", err)
	}
}

func TestProcessKillAndOptions(t *testing.T) {
	ctr, f := newTestContainer(t)
	ctx := context.Background()
	task, err := ctr.NewTask(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Kill(ctx, syscall.SIGTERM, WithKillExecID("sh")); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("kill of a missing exec: %v", err)
	}
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := task.Delete(ctx, WithProcessKill)
	if err != nil {
		t.Fatal(err)
	}
	if st.ExitCode() != 137 {
		t.Errorf("exit after WithProcessKill = %d", st.ExitCode())
	}
	f.tasks.mu.Lock()
	kills := f.tasks.kills
	f.tasks.mu.Unlock()
	last := kills[len(kills)-1]
	if last.Signal != uint32(syscall.SIGKILL) || !last.All || last.ExecId != "" {
		t.Errorf("WithProcessKill sent %v", last)
	}
	if kills[0].ExecId != "sh" || kills[0].Signal != uint32(syscall.SIGTERM) {
		t.Errorf("WithKillExecID sent %v", kills[0])
	}
}

func TestTaskCalls(t *testing.T) {
	ctr, f := newTestContainer(t)
	ctx := context.Background()
	task, err := ctr.NewTask(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Pause(ctx); err != nil {
		t.Error(err)
	}
	if err := task.Resume(ctx); err != nil {
		t.Error(err)
	}
	if err := task.Resize(ctx, 80, 24); err != nil {
		t.Error(err)
	}
	if err := task.CloseIO(ctx, WithStdinCloser); err != nil {
		t.Error(err)
	}
	limit := int64(100)
	if err := task.Update(ctx, WithResources(&specs.LinuxResources{Pids: &specs.LinuxPids{Limit: &limit}})); err != nil {
		t.Error(err)
	}
	if err := task.Update(ctx); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Update without options: %v", err)
	}
	pids, err := task.Pids(ctx)
	if err != nil || len(pids) != 2 || pids[1] != (ProcessInfo{Pid: 5000, ExecID: "sh"}) {
		t.Errorf("Pids = %v, %v", pids, err)
	}
	m, err := task.Metrics(ctx)
	if err != nil || m.ContainerID != "c1" || m.Data.PidsCurrent != 2 || m.Timestamp.IsZero() {
		t.Errorf("Metrics = %+v, %v", m, err)
	}

	reqs := f.tasks.requestsOf(func(any) bool { return true })
	var sawResize, sawClose, sawUpdate, sawMetrics bool
	for _, r := range reqs {
		switch r := r.(type) {
		case *tasksv1.ResizePtyRequest:
			sawResize = r.Width == 80 && r.Height == 24
		case *tasksv1.CloseIORequest:
			sawClose = r.Stdin
		case *tasksv1.UpdateTaskRequest:
			sawUpdate = bytes.Contains(r.Resources, []byte(`"limit":100`))
		case *tasksv1.MetricsRequest:
			sawMetrics = len(r.Filters) == 1 && r.Filters[0] == `id=="c1"`
		}
	}
	if !sawResize || !sawClose || !sawUpdate || !sawMetrics {
		t.Errorf("requests: resize %v closeIO %v update %v metrics %v", sawResize, sawClose, sawUpdate, sawMetrics)
	}
}

// A task that is gone when Delete asks (a delete that a daemon crash cut,
// finished by the restarted daemon) still has its IO closed and its FIFOs
// removed: no later call would.
func TestDeleteOfGoneTaskClosesIO(t *testing.T) {
	ctr, f := newTestContainer(t)
	ctx := context.Background()
	fifoDir := t.TempDir()
	task, err := ctr.NewTask(ctx, cio.NewCreator(cio.WithFIFODir(fifoDir), cio.WithStreams(nil, &testutil.Buffer{}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	f.tasks.exit("c1", "", 0)
	// The daemon deleted it behind the client's back.
	if _, err := f.tasks.deleteProc("c1", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := task.Delete(ctx); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Delete of a gone task: %v, want ErrNotFound", err)
	}
	if entries, _ := os.ReadDir(fifoDir); len(entries) != 0 {
		t.Errorf("FIFOs left after Delete of a gone task: %v", entries)
	}
}

// WithSpecRootFS: NewTask sends no mounts and does not look the container
// up for a snapshot; with mounts it is refused.
func TestNewTaskSpecRootFS(t *testing.T) {
	ctr, f := newTestContainer(t)
	ctx := context.Background()
	if _, err := ctr.NewTask(ctx, cio.NullIO, WithSpecRootFS, WithRootFS(Mount{Type: "bind", Source: "/srv"})); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("WithSpecRootFS with mounts: %v, want ErrInvalidArgument", err)
	}
	f.containers.mu.Lock()
	gets := f.containers.gets
	f.containers.mu.Unlock()
	if _, err := ctr.NewTask(ctx, cio.NullIO, WithSpecRootFS); err != nil {
		t.Fatal(err)
	}
	f.containers.mu.Lock()
	defer f.containers.mu.Unlock()
	if f.containers.gets != gets {
		t.Errorf("NewTask with WithSpecRootFS looked the container up %d times", f.containers.gets-gets)
	}
	create := f.tasks.requestsOf(func(r any) bool { _, ok := r.(*tasksv1.CreateTaskRequest); return ok })
	if len(create) != 1 || len(create[0].(*tasksv1.CreateTaskRequest).Rootfs) != 0 {
		t.Errorf("Create requests %v, want one without rootfs", create)
	}
}
