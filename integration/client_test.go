package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/events"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/io/cio"
	"github.com/berthrt/berth/namespaces"
	"github.com/berthrt/berth/oci"
	tasksv1 "github.com/berthrt/berth/proto/tasks/v1"
	"github.com/berthrt/berth/shimapi"
)

// TestClient drives one real daemon through the client library, the way an
// embedder does: containers, tasks, stdio, execs, resources, events and
// error classes.
func TestClient(t *testing.T) {
	d := newDaemon(t)
	const ns = "client"
	d.nsContext(ns) // remembered for cgroup cleanup
	c := d.client(t, ns)

	for _, tc := range []struct {
		name string
		test func(*testing.T, *daemon, *client.Client)
	}{
		{"Namespaces", testClientNamespaces},
		{"Containers", testClientContainers},
		{"Errors", testClientErrors},
		{"Lifecycle", testClientLifecycle},
		{"ExitCodes", testClientExitCodes},
		{"Stdin", testClientStdin},
		{"Output", testClientOutput},
		{"Terminal", testClientTerminal},
		{"TaskErrors", testClientTaskErrors},
		{"Exec", testClientExec},
		{"Resources", testClientResources},
		{"LogFileAndNullIO", testClientLogFile},
		{"Events", testClientEvents},
		{"StartOnCreate", testClientStartOnCreate},
		{"CleanupOnExit", testClientCleanupOnExit},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.test(t, d, c) })
	}
}

// testClientNamespaces checks that calls act in the client's default
// namespace unless the context names another.
func testClientNamespaces(t *testing.T, d *daemon, c *client.Client) {
	ctx := clientContext(t)
	other := namespaces.WithNamespace(ctx, "client-other")
	d.nsContext("client-other")

	newClientContainer(t, c, ctx, "ns-default", []string{"true"})
	newClientContainer(t, c, other, "ns-other", []string{"true"})

	for _, tc := range []struct {
		name    string
		ctx     context.Context
		visible string
		hidden  string
	}{
		{"default", ctx, "ns-default", "ns-other"},
		{"override", other, "ns-other", "ns-default"},
	} {
		if _, err := c.LoadContainer(tc.ctx, tc.visible); err != nil {
			t.Errorf("%s: load %s: %v", tc.name, tc.visible, err)
		}
		if _, err := c.LoadContainer(tc.ctx, tc.hidden); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("%s: load %s from the other namespace: %v, want ErrNotFound", tc.name, tc.hidden, err)
		}
		all, err := c.Containers(tc.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ids := containerIDs(all); !slices.Contains(ids, tc.visible) || slices.Contains(ids, tc.hidden) {
			t.Errorf("%s: containers %v, want %s and not %s", tc.name, ids, tc.visible, tc.hidden)
		}
	}
	// A task in the other namespace, driven with the overriding context.
	ctr, err := c.LoadContainer(other, "ns-other")
	if err != nil {
		t.Fatal(err)
	}
	task, exitc := startTask(t, other, ctr, cio.NullIO)
	if _, err := os.Stat(d.bundle("client-other", "ns-other")); err != nil {
		t.Errorf("bundle of the task in the other namespace: %v", err)
	}
	if _, err := c.TaskService().Get(ctx, &tasksv1.GetRequest{ContainerId: "ns-other"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("the task from the default namespace: %v, want ErrNotFound", err)
	}
	if st := receiveExit(t, exitc); st.ExitCode() != 0 || st.Error() != nil {
		t.Errorf("exit in the other namespace: %d, %v", st.ExitCode(), st.Error())
	}
	if _, err := task.Delete(other); err != nil {
		t.Fatal(err)
	}

	// The default is the client's, not the daemon's.
	if _, err := c.LoadContainer(namespaces.WithNamespace(ctx, "client"), "ns-default"); err != nil {
		t.Errorf("load from the client's default namespace by name: %v", err)
	}
	if _, err := c.LoadContainer(namespaces.WithNamespace(ctx, namespaces.Default), "ns-default"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("load from namespace %q: %v, want ErrNotFound", namespaces.Default, err)
	}
	// The spec's cgroup is made for the namespace the call acts in.
	for _, tc := range []struct {
		ctx      context.Context
		id, want string
	}{
		{ctx, "ns-default", "/berth/client/ns-default"},
		{other, "ns-other", "/berth/client-other/ns-other"},
	} {
		ctr, err := c.LoadContainer(tc.ctx, tc.id)
		if err != nil {
			t.Fatal(err)
		}
		spec, err := ctr.Spec(tc.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if spec.Linux.CgroupsPath != tc.want {
			t.Errorf("cgroups path %q, want %q", spec.Linux.CgroupsPath, tc.want)
		}
	}
}

// testClientContainers checks the container record: create with options,
// load, list with a filter, labels and spec.
func testClientContainers(t *testing.T, d *daemon, c *client.Client) {
	ctx := clientContext(t)
	labels := map[string]string{"app": "web", "tier": "front"}
	ctr := newClientContainer(t, c, ctx, "rec-1", []string{"echo", "hi"},
		client.WithContainerLabels(labels), client.WithRuntime("runc", nil))
	newClientContainer(t, c, ctx, "rec-2", []string{"true"},
		client.WithContainerLabels(map[string]string{"app": "db"}))

	loaded, err := c.LoadContainer(ctx, "rec-1")
	if err != nil {
		t.Fatal(err)
	}
	if loaded.ID() != "rec-1" {
		t.Errorf("loaded id %q", loaded.ID())
	}
	info, err := loaded.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != "rec-1" || info.Runtime.Name != "runc" || info.CreatedAt.IsZero() || len(info.Spec) == 0 {
		t.Errorf("info: id %q runtime %q created %v spec %d bytes", info.ID, info.Runtime.Name, info.CreatedAt, len(info.Spec))
	}
	if !maps.Equal(info.Labels, labels) {
		t.Errorf("info labels %v, want %v", info.Labels, labels)
	}

	for _, tc := range []struct {
		filter string
		want   []string
	}{
		{`labels.app=="web"`, []string{"rec-1"}},
		{`labels.app=="db"`, []string{"rec-2"}},
		{`labels.tier`, []string{"rec-1"}},
		{`labels.app=="none"`, nil},
		{`runtime.name=="runc"`, []string{"rec-1", "rec-2"}}, // the daemon records its default
		{`id=="rec-2"`, []string{"rec-2"}},
	} {
		got, err := c.Containers(ctx, tc.filter)
		if err != nil {
			t.Fatalf("containers %s: %v", tc.filter, err)
		}
		if ids := containerIDs(got); !slices.Equal(ids, tc.want) {
			t.Errorf("containers %s: %v, want %v", tc.filter, ids, tc.want)
		}
	}

	got, err := ctr.SetLabels(ctx, map[string]string{"tier": "", "owner": "ci"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"app": "web", "owner": "ci"}
	if !maps.Equal(got, want) {
		t.Errorf("SetLabels returned %v, want %v", got, want)
	}
	if got, err := ctr.Labels(ctx); err != nil || !maps.Equal(got, want) {
		t.Errorf("Labels: %v, %v, want %v", got, err, want)
	}

	// Update replaces what its options set and keeps the rest; the
	// runtime may not change.
	if err := ctr.Update(ctx, client.WithContainerLabels(map[string]string{"only": "this"}),
		client.WithContainerExtension("ext", wrapperspb.String("data"))); err != nil {
		t.Fatal(err)
	}
	info2, err := ctr.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(info2.Labels, map[string]string{"only": "this"}) || info2.Runtime.Name != "runc" ||
		!bytes.Equal(info2.Spec, info.Spec) || !info2.CreatedAt.Equal(info.CreatedAt) || !info2.UpdatedAt.After(info.UpdatedAt) {
		t.Errorf("after update: labels %v runtime %q created %v updated %v (before %v)",
			info2.Labels, info2.Runtime.Name, info2.CreatedAt, info2.UpdatedAt, info.UpdatedAt)
	}
	var ext wrapperspb.StringValue
	if a := info2.Extensions["ext"]; a == nil || a.UnmarshalTo(&ext) != nil || ext.Value != "data" {
		t.Errorf("extension after update: %v", info2.Extensions)
	}
	if err := ctr.Update(ctx, client.WithRuntime("/usr/bin/other", nil)); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("update the runtime: %v, want ErrInvalidArgument", err)
	}

	spec, err := ctr.Spec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(spec.Process.Args, []string{"echo", "hi"}) || !spec.Root.Readonly || spec.Root.Path != busyboxLower(t) {
		t.Errorf("spec: args %q, root %+v", spec.Process.Args, spec.Root)
	}
}

// testClientErrors checks that errors keep their class across the wire.
func testClientErrors(t *testing.T, d *daemon, c *client.Client) {
	ctx := clientContext(t)
	newClientContainer(t, c, ctx, "dup", []string{"true"})
	spec := clientSpec(t, []string{"true"})

	_, err := c.LoadContainer(ctx, "missing")
	if !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("load a missing container: %v, want ErrNotFound", err)
	}
	_, err = c.NewContainer(ctx, "dup", spec)
	if !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("a duplicate container: %v, want ErrAlreadyExists", err)
	}
	// A bad id, with a spec made for a good one so that the daemon judges.
	_, err = c.NewContainer(ctx, "bad/id", client.WithSpec(mustSpec(t, "bad-id", []string{"true"})))
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("a container with a bad id: %v, want ErrInvalidArgument", err)
	}
	_, err = c.NewContainer(ctx, "bad/id", spec)
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("WithNewSpec for a bad id: %v, want ErrInvalidArgument", err)
	}
	if _, err := c.Containers(namespaces.WithNamespace(ctx, "bad/ns")); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("a bad namespace: %v, want ErrInvalidArgument", err)
	}
	ctr, err := c.LoadContainer(ctx, "dup")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctr.Task(ctx, nil); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("the task of a container without one: %v, want ErrNotFound", err)
	}
}

// testClientLifecycle follows one task from NewTask to Delete: pid, status
// transitions, output, Wait before Start and the exit.
func testClientLifecycle(t *testing.T, d *daemon, c *client.Client) {
	ctx := clientContext(t)
	// The task waits for stdin to end before it exits, so that Running is
	// observable.
	ctr := newClientContainer(t, c, ctx, "life", []string{"sh", "-c", "echo hello; echo oops >&2; read x; exit 0"})
	var out, errb testutil.Buffer
	stdin, stdinW := io.Pipe()
	defer stdinW.Close()
	task, err := ctr.NewTask(ctx, d.creator(stdin, &out, &errb))
	if err != nil {
		t.Fatal(err)
	}
	deleteTaskOnCleanup(t, task)
	if task.Pid() == 0 {
		t.Error("Pid is 0 after NewTask")
	}
	if task.ID() != "life" {
		t.Errorf("task id %q", task.ID())
	}
	requireStatus(t, ctx, task, client.Created)

	exitc, err := task.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	requireStatus(t, ctx, task, client.Running)
	eventually(t, time.Minute, "hello on stdout", func() bool { return out.String() == "hello\n" })
	eventually(t, time.Minute, "oops on stderr", func() bool { return errb.String() == "oops\n" })

	// Same task, loaded again: same pid and status.
	again, err := ctr.Task(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again.Pid() != task.Pid() {
		t.Errorf("loaded task pid %d, want %d", again.Pid(), task.Pid())
	}

	stdinW.Close() // EOF of the reader closes the process's stdin
	st := receiveExit(t, exitc)
	if code, at, err := st.Result(); err != nil || code != 0 || at.Before(before.Add(-time.Second)) {
		t.Errorf("exit: code %d at %v (started %v), err %v", code, at, before, err)
	}
	requireStatus(t, ctx, task, client.Stopped)
	s, err := task.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.ExitTime.IsZero() || s.ExitStatus != 0 {
		t.Errorf("stopped status %+v", s)
	}
	// Waiting after the exit works too.
	if st := receiveExit(t, mustWait(t, ctx, task)); st.ExitCode() != 0 {
		t.Errorf("wait after exit: %d", st.ExitCode())
	}

	fifos := task.IO().Config()
	del, err := task.Delete(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if del.ExitCode() != 0 || del.ExitTime().IsZero() {
		t.Errorf("delete: exit %d at %v", del.ExitCode(), del.ExitTime())
	}
	if _, err := os.Stat(filepath.Dir(fifos.Stdout)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("fifo folder after delete: %v", err)
	}
	if _, err := ctr.Task(ctx, nil); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("task after delete: %v, want ErrNotFound", err)
	}
	if out.String() != "hello\n" || errb.String() != "oops\n" {
		t.Errorf("output %q / %q", out.String(), errb.String())
	}
}

// testClientExitCodes checks exit codes of a normal exit, an exit with a
// code and a SIGKILL, through Wait, Status and Delete.
func testClientExitCodes(t *testing.T, d *daemon, c *client.Client) {
	for _, tc := range []struct {
		name string
		args []string
		kill bool
		want uint32
	}{
		{"zero", []string{"true"}, false, 0},
		{"three", []string{"sh", "-c", "exit 3"}, false, 3},
		{"sigkill", []string{"sleep", "60"}, true, 137},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := clientContext(t)
			ctr := newClientContainer(t, c, ctx, "exit-"+tc.name, tc.args)
			task, exitc := startTask(t, ctx, ctr, cio.NullIO)
			if tc.kill {
				requireStatus(t, ctx, task, client.Running)
				if err := task.Kill(ctx, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
			st := receiveExit(t, exitc)
			if st.Error() != nil || st.ExitCode() != tc.want || st.ExitTime().IsZero() {
				t.Errorf("exit %d at %v, err %v; want %d", st.ExitCode(), st.ExitTime(), st.Error(), tc.want)
			}
			s, err := task.Status(ctx)
			if err != nil || s.Status != client.Stopped || s.ExitStatus != tc.want {
				t.Errorf("status %+v, %v; want stopped with %d", s, err, tc.want)
			}
			del, err := task.Delete(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if del.ExitCode() != tc.want {
				t.Errorf("delete: exit %d, want %d", del.ExitCode(), tc.want)
			}
		})
	}
}

// testClientStdin sends input through cat and back, ending stdin with
// CloseIO.
func testClientStdin(t *testing.T, d *daemon, c *client.Client) {
	ctx := clientContext(t)
	ctr := newClientContainer(t, c, ctx, "cat", []string{"cat"})
	var out testutil.Buffer
	stdin, stdinW := io.Pipe()
	task, exitc := startTask(t, ctx, ctr, d.creator(stdin, &out, nil))
	const line = "round trip through cat\n"
	if _, err := io.WriteString(stdinW, line); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "cat to echo the line", func() bool { return out.String() == line })
	// The reader has not ended: only CloseIO ends cat.
	if err := task.CloseIO(ctx, client.WithStdinCloser); err != nil {
		t.Fatal(err)
	}
	st := receiveExit(t, exitc)
	if st.ExitCode() != 0 || st.Error() != nil {
		t.Errorf("cat exit %d, %v", st.ExitCode(), st.Error())
	}
	stdinW.Close()
	if _, err := task.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if out.String() != line {
		t.Errorf("output %q, want %q", out.String(), line)
	}
}

// testClientOutput checks that nothing a task writes is lost: neither the
// output of a task that exits at once, nor a large output.
func testClientOutput(t *testing.T, d *daemon, c *client.Client) {
	const big = 3 << 20 // many times a FIFO's capacity
	for _, tc := range []struct {
		name  string
		args  []string
		stdin io.Reader
		want  func(out, errb string) bool
	}{
		{"quick exit", []string{"echo", "bye"}, nil,
			func(out, errb string) bool { return out == "bye\n" && errb == "" }},
		{"large", []string{"sh", "-c", fmt.Sprintf("head -c %d /dev/zero; echo done >&2", big)}, nil,
			func(out, errb string) bool { return len(out) == big && errb == "done\n" }},
		{"stdin from a string", []string{"cat"}, strings.NewReader("from a string\n"),
			func(out, errb string) bool { return out == "from a string\n" }},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "-"), func(t *testing.T) {
			ctx := clientContext(t)
			ctr := newClientContainer(t, c, ctx, "out-"+strings.ReplaceAll(tc.name, " ", "-"), tc.args)
			var out, errb testutil.Buffer
			task, exitc := startTask(t, ctx, ctr, d.creator(tc.stdin, &out, &errb))
			if st := receiveExit(t, exitc); st.ExitCode() != 0 {
				t.Errorf("exit %d, %v", st.ExitCode(), st.Error())
			}
			if _, err := task.Delete(ctx); err != nil {
				t.Fatal(err)
			}
			if o, e := out.String(), errb.String(); !tc.want(o, e) {
				t.Errorf("stdout %d bytes %.40q, stderr %q", len(o), o, e)
			}
		})
	}
}

// testClientTerminal runs a task on a pty: its size follows Resize, input
// arrives through it and its output comes back on stdout.
func testClientTerminal(t *testing.T, d *daemon, c *client.Client) {
	ctx := clientContext(t)
	ctr := createClientContainer(t, c, ctx, "tty", clientSpec(t, []string{"sh", "-c", "read x; stty size; echo got-$x; exit 6"}, oci.WithTTY))
	var out testutil.Buffer
	stdin, stdinW := io.Pipe()
	defer stdinW.Close()
	task, exitc := startTask(t, ctx, ctr, d.creator(stdin, &out, nil, cio.WithTerminal))
	if cfg := task.IO().Config(); !cfg.Terminal || cfg.Stderr != "" {
		t.Errorf("terminal stdio %+v", cfg)
	}
	if err := task.Resize(ctx, 100, 30); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(stdinW, "line\n"); err != nil {
		t.Fatal(err)
	}
	if st := receiveExit(t, exitc); st.ExitCode() != 6 {
		t.Errorf("exit %d, %v", st.ExitCode(), st.Error())
	}
	if _, err := task.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	// The pty echoes the input and ends lines with CR LF.
	got := strings.ReplaceAll(out.String(), "\r\n", "\n")
	if !strings.Contains(got, "30 100\n") || !strings.Contains(got, "got-line\n") {
		t.Errorf("terminal output %q", out.String())
	}
}

// testClientTaskErrors checks the classes of errors of calls a task's
// state does not allow.
func testClientTaskErrors(t *testing.T, d *daemon, c *client.Client) {
	ctx := clientContext(t)
	ctr := newClientContainer(t, c, ctx, "task-errors", []string{"sleep", "60"})
	task, err := ctr.NewTask(ctx, cio.NullIO)
	if err != nil {
		t.Fatal(err)
	}
	deleteTaskOnCleanup(t, task)
	if _, err := ctr.NewTask(ctx, cio.NullIO); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("a second task: %v, want ErrAlreadyExists", err)
	}
	// A task never started deletes as it is, and may be made again.
	if _, err := task.Delete(ctx); err != nil {
		t.Fatalf("delete a created task: %v", err)
	}
	if task, err = ctr.NewTask(ctx, cio.NullIO); err != nil {
		t.Fatal(err)
	}
	deleteTaskOnCleanup(t, task)
	exitc := mustWait(t, ctx, task)
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ctr.Delete(ctx); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("delete a container with a task: %v, want ErrFailedPrecondition", err)
	}
	if _, err := task.Delete(ctx); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("delete a running task: %v, want ErrFailedPrecondition", err)
	}
	proc := processSpec(t, ctx, ctr, "true")
	p, err := task.Exec(ctx, "twice", proc, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := task.Exec(ctx, "twice", proc, nil); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("an exec id twice: %v, want ErrAlreadyExists", err)
	}
	if _, err := task.Exec(ctx, "bad/exec", proc, nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("a bad exec id: %v, want ErrInvalidArgument", err)
	}
	if _, err := task.LoadProcess(ctx, "missing", nil); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("load a missing exec: %v, want ErrNotFound", err)
	}
	if _, err := p.Delete(ctx); err != nil {
		t.Errorf("delete an exec never started: %v", err)
	}
	if _, err := c.Containers(ctx, "labels.a=="); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("a bad filter: %v, want ErrInvalidArgument", err)
	}

	// A wait whose context ends returns that as its error.
	wctx, cancel := context.WithCancel(ctx)
	cancelled := mustWait(t, wctx, task)
	cancel()
	if st := receiveExit(t, cancelled); !errors.Is(st.Error(), context.Canceled) || st.ExitCode() != client.UnknownExitStatus {
		t.Errorf("wait with a cancelled context: %d, %v; want context.Canceled", st.ExitCode(), st.Error())
	}

	if err := task.Kill(ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	receiveExit(t, exitc)
	if err := task.Kill(ctx, syscall.SIGKILL); !errors.Is(err, errdefs.ErrNotFound) && !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("kill an exited task: %v, want ErrNotFound or ErrFailedPrecondition", err)
	}
	if err := task.Pause(ctx); !errors.Is(err, errdefs.ErrFailedPrecondition) && !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("pause an exited task: %v, want ErrFailedPrecondition or ErrNotFound", err)
	}
	if _, err := task.Metrics(ctx); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("metrics of an exited task: %v, want ErrNotFound", err)
	}
	// The shim registers an exec in a stopped container, but refuses to
	// start it.
	late, err := task.Exec(ctx, "late", proc, nil)
	if err == nil {
		err = late.Start(ctx)
		if _, derr := late.Delete(ctx); derr != nil {
			t.Errorf("delete an exec that could not start: %v", derr)
		}
	}
	if !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("exec in an exited task: %v, want ErrFailedPrecondition", err)
	}
	if _, err := task.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if err := task.Kill(ctx, syscall.SIGKILL); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("kill a deleted task: %v, want ErrNotFound", err)
	}
}

// testClientExec runs exec processes with their own stdio beside a task.
func testClientExec(t *testing.T, d *daemon, c *client.Client) {
	ctx := clientContext(t)
	ctr := newClientContainer(t, c, ctx, "exec", []string{"sleep", "60"})
	task, _ := startTask(t, ctx, ctr, cio.NullIO)

	// An exec that lives until told, to be seen in Pids.
	long := processSpec(t, ctx, ctr, "sh", "-c", "echo ready; read x; echo got $x; exit 5")
	var out testutil.Buffer
	stdin, stdinW := io.Pipe()
	defer stdinW.Close()
	p, err := task.Exec(ctx, "long", long, d.creator(stdin, &out, nil))
	if err != nil {
		t.Fatal(err)
	}
	if p.ID() != "long" {
		t.Errorf("exec id %q", p.ID())
	}
	requireStatus(t, ctx, p, client.Created)
	exitc := mustWait(t, ctx, p)
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if p.Pid() == 0 {
		t.Error("exec pid 0 after Start")
	}
	eventually(t, time.Minute, "the exec's first line", func() bool { return out.String() == "ready\n" })
	requireStatus(t, ctx, p, client.Running)

	pids, err := task.Pids(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var sawInit, sawExec bool
	for _, pi := range pids {
		sawInit = sawInit || pi.Pid == task.Pid()
		sawExec = sawExec || (pi.Pid == p.Pid() && pi.ExecID == "long")
	}
	if !sawInit || !sawExec {
		t.Errorf("pids %+v: want init %d and exec %d (long)", pids, task.Pid(), p.Pid())
	}

	loaded, err := task.LoadProcess(ctx, "long", nil)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Pid() != p.Pid() {
		t.Errorf("loaded exec pid %d, want %d", loaded.Pid(), p.Pid())
	}

	io.WriteString(stdinW, "input\n")
	st := receiveExit(t, exitc)
	if st.ExitCode() != 5 || st.ExitTime().IsZero() {
		t.Errorf("exec exit %d at %v, want 5", st.ExitCode(), st.ExitTime())
	}
	if s, err := p.Status(ctx); err != nil || s.Status != client.Stopped || s.ExitStatus != 5 || s.ExitTime.IsZero() {
		t.Errorf("exec status %+v, %v; want stopped with 5", s, err)
	}
	del, err := p.Delete(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if del.ExitCode() != 5 {
		t.Errorf("delete exec: exit %d, want 5", del.ExitCode())
	}
	if got := out.String(); got != "ready\ngot input\n" {
		t.Errorf("exec output %q", got)
	}
	if _, err := task.LoadProcess(ctx, "long", nil); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("exec after delete: %v, want ErrNotFound", err)
	}

	// A second exec with stderr of its own, killed by a signal.
	short := processSpec(t, ctx, ctr, "sh", "-c", "echo to-err >&2; exec sleep 60")
	var errb testutil.Buffer
	p2, err := task.Exec(ctx, "short", short, d.creator(nil, nil, &errb))
	if err != nil {
		t.Fatal(err)
	}
	exitc = mustWait(t, ctx, p2)
	if err := p2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the exec's stderr", func() bool { return errb.String() == "to-err\n" })
	if err := p2.Kill(ctx, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if st := receiveExit(t, exitc); st.ExitCode() != 128+uint32(syscall.SIGTERM) {
		t.Errorf("exec killed by SIGTERM: exit %d", st.ExitCode())
	}
	if _, err := p2.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	// The init is untouched.
	requireStatus(t, ctx, task, client.Running)
}

// testClientResources pauses, resumes, updates and measures a task.
func testClientResources(t *testing.T, d *daemon, c *client.Client) {
	ctx := clientContext(t)
	ctr := newClientContainer(t, c, ctx, "res", []string{"sh", "-c", "while :; do sleep 0.05; done"})
	task, _ := startTask(t, ctx, ctr, cio.NullIO)

	if err := task.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	requireStatus(t, ctx, task, client.Paused)
	if err := task.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	requireStatus(t, ctx, task, client.Running)

	m, err := task.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.ContainerID != "res" || m.Timestamp.IsZero() || m.Data == nil {
		t.Fatalf("metrics %+v", m)
	}
	if m.Data.MemoryUsageBytes == 0 || m.Data.PidsCurrent == 0 {
		t.Errorf("metrics without usage: %v", m.Data)
	}

	const limit = 64 << 20
	l := int64(limit)
	if err := task.Update(ctx, client.WithResources(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &l}})); err != nil {
		t.Fatal(err)
	}
	m, err = task.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.Data.MemoryLimitBytes != limit {
		t.Errorf("memory limit after update %d, want %d", m.Data.MemoryLimitBytes, limit)
	}

	if err := task.Update(ctx); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("update without options: %v, want ErrInvalidArgument", err)
	}
	// Killing a paused task: WithProcessKill kills every process.
	if err := task.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	del, err := task.Delete(ctx, client.WithProcessKill)
	if err != nil {
		t.Fatal(err)
	}
	if del.ExitCode() != 137 {
		t.Errorf("delete with kill: exit %d, want 137", del.ExitCode())
	}
}

// testClientLogFile sends a task's output to a file, and another's nowhere.
func testClientLogFile(t *testing.T, d *daemon, c *client.Client) {
	ctx := clientContext(t)
	logPath := filepath.Join(t.TempDir(), "logs", "task.log")
	ctr := newClientContainer(t, c, ctx, "logged", []string{"sh", "-c", "echo out-line; echo err-line >&2"})
	task, exitc := startTask(t, ctx, ctr, cio.LogFile(logPath))
	if st := receiveExit(t, exitc); st.ExitCode() != 0 {
		t.Errorf("exit %d", st.ExitCode())
	}
	if _, err := task.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(data); !strings.Contains(got, "out-line\n") || !strings.Contains(got, "err-line\n") {
		t.Errorf("log file %q", got)
	}

	if _, err := ctr.NewTask(ctx, cio.LogFile("relative.log")); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("a relative log file: %v, want ErrInvalidArgument", err)
	}

	quiet := newClientContainer(t, c, ctx, "quiet", []string{"sh", "-c", "echo nowhere; cat; exit 4"})
	task, exitc = startTask(t, ctx, quiet, cio.NullIO)
	// stdin is /dev/null: cat ends at once.
	if st := receiveExit(t, exitc); st.ExitCode() != 4 {
		t.Errorf("NullIO task exit %d, want 4", st.ExitCode())
	}
	if _, err := task.Delete(ctx); err != nil {
		t.Fatal(err)
	}
}

// testClientEvents sees a task's exit with its status through Subscribe.
func testClientEvents(t *testing.T, d *daemon, c *client.Client) {
	ctx := clientContext(t)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Subscribe returns before berthd listens: the container's label
	// updates (awaitSubscribed) show when it does, before the task runs.
	evs, errs := c.Subscribe(sctx, `topic=="/tasks/exit"`, `topic=="/containers/update"`)

	ctr := newClientContainer(t, c, ctx, "evented", []string{"sh", "-c", "exit 9"})
	awaitSubscribed(t, ctx, ctr, evs, errs)
	task, _ := startTask(t, ctx, ctr, cio.NullIO)
	timeout := time.After(time.Minute)
	for {
		select {
		case env, ok := <-evs:
			if !ok {
				t.Fatalf("subscription ended: %v", <-errs)
			}
			if env.Topic == "/containers/update" {
				continue // a late one of awaitSubscribed
			}
			if env.Topic != "/tasks/exit" {
				t.Fatalf("event of topic %q passed the filter", env.Topic)
			}
			var exit shimapi.TaskExit
			if err := env.Event.UnmarshalTo(&exit); err != nil {
				t.Fatal(err)
			}
			if exit.ContainerId != "evented" {
				continue
			}
			if env.Namespace != "client" || exit.ExitStatus != 9 || exit.Pid != task.Pid() || exit.ExitedAt == nil {
				t.Errorf("exit event in %q: %v", env.Namespace, &exit)
			}
			if _, err := task.Delete(ctx); err != nil {
				t.Fatal(err)
			}
			cancel()
			// Ending the context ends the subscription without an error.
			for range evs {
			}
			if err, ok := <-errs; ok {
				t.Errorf("subscription error after cancel: %v", err)
			}
			return
		case <-timeout:
			t.Fatal("no /tasks/exit event for the task")
		}
	}
}

// TestClientReattach reconnects a new client to the stdio of a task after
// a daemon restart: the output the task writes afterwards arrives, and Wait
// on the new client returns its exit. What the old client was doing with
// the daemon ends with ErrUnavailable.
func TestClientReattach(t *testing.T) {
	d := newDaemon(t)
	const ns = "client-reattach"
	ctx := d.nsContext(ns)
	c := d.client(t, ns)

	ctr, err := c.NewContainer(ctx, "ticker", clientSpec(t, []string{"sh", "-c", "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.1; done"}))
	if err != nil {
		t.Fatal(err)
	}
	var out testutil.Buffer
	stdin, stdinW := io.Pipe()
	defer stdinW.Close()
	task, err := ctr.NewTask(ctx, d.creator(stdin, &out, nil))
	if err != nil {
		t.Fatal(err)
	}
	oldExitc := mustWait(t, ctx, task)
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	execSpec := processSpec(t, ctx, ctr, "sh", "-c", "while :; do echo exec-tick >&2; sleep 0.1; done")
	var execErr testutil.Buffer
	p, err := task.Exec(ctx, "ticker-exec", execSpec, d.creator(nil, nil, &execErr))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	_, oldErrs := c.Subscribe(sctx, `topic=="/tasks/exit"`)
	eventually(t, time.Minute, "ticks before the restart", func() bool {
		return strings.Count(out.String(), "\n") >= 2 && strings.Count(execErr.String(), "\n") >= 2
	})

	fifos := task.IO().Config()
	d.kill()

	// A call of the old client fails with its class while the daemon is
	// away; its Wait in flight carries on (checked below), its
	// subscription ends.
	if _, err := c.LoadContainer(ctx, "ticker"); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("call while the daemon is down: %v, want ErrUnavailable", err)
	}
	select {
	case err := <-oldErrs:
		if !errors.Is(err, errdefs.ErrUnavailable) {
			t.Errorf("subscription across the restart: %v, want ErrUnavailable", err)
		}
	case <-time.After(time.Minute):
		t.Error("the subscription did not end with the daemon")
	}
	// The old client's program goes away, its IO with it (but its FIFOs
	// stay: they are the task's).
	for _, pio := range []cio.IO{task.IO(), p.IO()} {
		pio.Cancel()
		pio.Wait()
	}
	d.start()
	// The old client connects again by itself.
	if _, err := c.LoadContainer(ctx, "ticker"); err != nil {
		t.Errorf("old client after the restart: %v", err)
	}

	c2 := d.client(t, ns)
	ctr2, err := c2.LoadContainer(ctx, "ticker")
	if err != nil {
		t.Fatal(err)
	}
	deleteContainerOnCleanup(t, ctx, ctr2)
	var out2 testutil.Buffer
	task2, err := ctr2.Task(ctx, cio.NewAttach(cio.WithStreams(nil, &out2, nil)))
	if err != nil {
		t.Fatal(err)
	}
	deleteTaskOnCleanup(t, task2)
	if task2.Pid() != task.Pid() {
		t.Errorf("reattached pid %d, want %d", task2.Pid(), task.Pid())
	}
	if task2.IO() == nil || task2.IO().Config() != fifos {
		t.Fatalf("reattached IO %v, want %+v", task2.IO(), fifos)
	}
	requireStatus(t, ctx, task2, client.Running)
	eventually(t, time.Minute, "ticks after the restart", func() bool { return strings.Count(out2.String(), "\n") >= 3 })
	for _, l := range strings.Split(strings.TrimSpace(out2.String()), "\n") {
		if !strings.HasPrefix(l, "tick ") {
			t.Errorf("reattached output line %q", l)
		}
	}

	// The exec too.
	var execErr2 testutil.Buffer
	p2, err := task2.LoadProcess(ctx, "ticker-exec", cio.NewAttach(cio.WithStreams(nil, nil, &execErr2)))
	if err != nil {
		t.Fatal(err)
	}
	if p2.Pid() != p.Pid() || p2.Pid() == 0 {
		t.Errorf("reattached exec pid %d, want %d", p2.Pid(), p.Pid())
	}
	eventually(t, time.Minute, "exec ticks after the restart", func() bool { return strings.Count(execErr2.String(), "\n") >= 3 })
	execExitc := mustWait(t, ctx, p2)
	if err := p2.Kill(ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if st := receiveExit(t, execExitc); st.ExitCode() != 137 || st.Error() != nil {
		t.Errorf("exec exit after kill: %d, %v", st.ExitCode(), st.Error())
	}
	if _, err := p2.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(execErr2.String(), "exec-tick\n"); got != strings.Count(execErr2.String(), "\n") {
		t.Errorf("reattached exec output %q", execErr2.String())
	}

	// Subscribe returns before berthd has registered the subscription:
	// touch the container's labels until their /containers/update comes
	// through, so the exit below cannot be published before it listens.
	evs, errs := c2.Subscribe(sctx, `topic=="/tasks/exit"`, `topic=="/containers/update"`)
	awaitSubscribed(t, ctx, ctr2, evs, errs)
	exitc := mustWait(t, ctx, task2)
	if err := task2.Kill(ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if st := receiveExit(t, exitc); st.ExitCode() != 137 || st.Error() != nil || st.ExitTime().IsZero() {
		t.Errorf("exit after kill: %d at %v, %v", st.ExitCode(), st.ExitTime(), st.Error())
	}
	// The old client's Wait, begun before the restart, has the exit too.
	if st := receiveExit(t, oldExitc); st.ExitCode() != 137 || st.Error() != nil {
		t.Errorf("wait across the restart: %d, %v; want 137", st.ExitCode(), st.Error())
	}
	exitTimeout := time.After(time.Minute)
awaitExit:
	for {
		select {
		case env, ok := <-evs:
			if !ok {
				t.Fatalf("subscription ended: %v", <-errs)
			}
			if env.Topic != "/tasks/exit" {
				continue // a late /containers/update of awaitSubscribed
			}
			var exit shimapi.TaskExit
			if err := env.Event.UnmarshalTo(&exit); err != nil {
				t.Fatal(err)
			}
			if exit.ContainerId != "ticker" || exit.ExitStatus != 137 {
				t.Errorf("exit event %v", &exit)
			}
			break awaitExit
		case <-exitTimeout:
			t.Error("no /tasks/exit after the restart")
			break awaitExit
		}
	}
	del, err := task2.Delete(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if del.ExitCode() != 137 {
		t.Errorf("delete: exit %d, want 137", del.ExitCode())
	}
	for _, p := range []string{fifos.Stdin, fifos.Stdout, filepath.Dir(fifos.Stdout)} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after delete: %v", p, err)
		}
	}
}

// clientContext is a context without a namespace, bounded for one test.
func clientContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// clientSpec is WithNewSpec running args on the shared busybox rootfs,
// read-only, changed by extra.
func clientSpec(t *testing.T, args []string, extra ...oci.SpecOpts) client.NewContainerOpts {
	t.Helper()
	opts := []oci.SpecOpts{oci.WithRootFSPath(busyboxLower(t)), oci.WithRootFSReadonly, oci.WithProcessArgs(args...)}
	return client.WithNewSpec(append(opts, extra...)...)
}

// mustSpec is a spec for container id in namespace "client".
func mustSpec(t *testing.T, id string, args []string) *specs.Spec {
	t.Helper()
	s, err := oci.GenerateSpec(context.Background(), "client", id,
		oci.WithRootFSPath(busyboxLower(t)), oci.WithRootFSReadonly, oci.WithProcessArgs(args...))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newClientContainer creates container id running args, deleted (with its
// task, if any) when the test ends.
func newClientContainer(t *testing.T, c *client.Client, ctx context.Context, id string, args []string, opts ...client.NewContainerOpts) client.Container {
	t.Helper()
	return createClientContainer(t, c, ctx, id, append([]client.NewContainerOpts{clientSpec(t, args)}, opts...)...)
}

// createClientContainer creates container id with opts, deleted (with its
// task, if any) when the test ends.
func createClientContainer(t *testing.T, c *client.Client, ctx context.Context, id string, opts ...client.NewContainerOpts) client.Container {
	t.Helper()
	ctr, err := c.NewContainer(ctx, id, opts...)
	if err != nil {
		t.Fatalf("new container %s: %v", id, err)
	}
	deleteContainerOnCleanup(t, ctx, ctr)
	return ctr
}

// deleteContainerOnCleanup deletes ctr, with its task if any, when the test
// ends; ctx gives the namespace.
func deleteContainerOnCleanup(t *testing.T, ctx context.Context, ctr client.Container) {
	t.Helper()
	cctx := context.WithoutCancel(ctx)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(cctx, 10*time.Second)
		defer cancel()
		if task, err := ctr.Task(ctx, nil); err == nil {
			task.Delete(ctx, client.WithProcessKill)
		}
		if err := ctr.Delete(ctx); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("cleanup: delete container %s: %v", ctr.ID(), err)
		}
	})
}

// processSpec is the process of ctr's spec, running args: what an exec in
// ctr runs.
func processSpec(t *testing.T, ctx context.Context, ctr client.Container, args ...string) *specs.Process {
	t.Helper()
	spec, err := ctr.Spec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := spec.Process
	p.Args = args
	return p
}

// startTask creates ctr's task with creator, deleted when the test ends,
// and starts it. The channel receives the task's exit: the wait began
// before Start.
func startTask(t *testing.T, ctx context.Context, ctr client.Container, creator cio.Creator) (client.Task, <-chan client.ExitStatus) {
	t.Helper()
	task, err := ctr.NewTask(ctx, creator)
	if err != nil {
		t.Fatal(err)
	}
	deleteTaskOnCleanup(t, task)
	exitc := mustWait(t, ctx, task)
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return task, exitc
}

// deleteTaskOnCleanup kills and deletes task when the test ends, unless the
// test deleted it, and frees its IO.
func deleteTaskOnCleanup(t *testing.T, task client.Task) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := task.Delete(ctx, client.WithProcessKill); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("cleanup: delete task %s: %v", task.ID(), err)
		}
		if pio := task.IO(); pio != nil {
			pio.Close()
		}
	})
}

func mustWait(t *testing.T, ctx context.Context, p client.Process) <-chan client.ExitStatus {
	t.Helper()
	exitc, err := p.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return exitc
}

func receiveExit(t *testing.T, exitc <-chan client.ExitStatus) client.ExitStatus {
	t.Helper()
	select {
	case st := <-exitc:
		return st
	case <-time.After(15 * time.Second):
		t.Fatal("no exit status")
		return client.ExitStatus{}
	}
}

// requireStatus fails the test unless p's status is want.
func requireStatus(t *testing.T, ctx context.Context, p client.Process, want client.ProcessStatus) {
	t.Helper()
	s, err := p.Status(ctx)
	if err != nil {
		t.Fatalf("status of %s: %v", p.ID(), err)
	}
	if s.Status != want {
		t.Fatalf("status of %s: %s, want %s", p.ID(), s.Status, want)
	}
}

func containerIDs(cs []client.Container) []string {
	ids := make([]string, 0, len(cs))
	for _, c := range cs {
		ids = append(ids, c.ID())
	}
	slices.Sort(ids)
	if len(ids) == 0 {
		return nil
	}
	return ids
}

// awaitSubscribed returns once a subscription that passes ctr's
// /containers/update events is registered in berthd: it sets a label on
// ctr every 100 ms until an event arrives (a minute at most).
func awaitSubscribed(t *testing.T, ctx context.Context, ctr client.Container, evs <-chan *events.Envelope, errs <-chan error) {
	t.Helper()
	deadline := time.After(time.Minute)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for n := 0; ; n++ {
		if _, err := ctr.SetLabels(ctx, map[string]string{"subscribed-probe": strconv.Itoa(n)}); err != nil {
			t.Fatal(err)
		}
		select {
		case _, ok := <-evs:
			if !ok {
				t.Fatalf("subscription ended: %v", <-errs)
			}
			return // any event that came through says it is live
		case <-tick.C:
		case <-deadline:
			t.Fatal("subscription not live within a minute: no /containers/update came through")
		}
	}
}
