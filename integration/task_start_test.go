package integration

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/events"
	"github.com/berthrt/berth/internal/testutil"
)

// testClientStartOnCreate runs tasks created and started in one call
// (client.WithTaskStart, `runc run --detach` in the shim): the exit of a
// task that may end before NewTask returns still reaches Wait, Delete and
// the event stream, once and after /tasks/create and /tasks/start; the
// output is delivered; Start on it fails; the end of the caller's stdin
// ends the process's stdin, as after a Start.
func testClientStartOnCreate(t *testing.T, d *daemon, c *client.Client) {
	ctx := clientContext(t)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	topics := []string{"/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"}
	var filters []string
	for _, topic := range topics {
		filters = append(filters, `topic=="`+topic+`"`)
	}
	// Subscribe returns before berthd listens: the container's label
	// updates (awaitSubscribed) show when it does, before the task runs.
	evs, errs := c.Subscribe(sctx, append(filters, `topic=="/containers/update"`)...)

	ctr := newClientContainer(t, c, ctx, "run-at-once", []string{"sh", "-c", "echo out; exit 7"})
	awaitSubscribed(t, ctx, ctr, evs, errs)
	var out testutil.Buffer
	task, err := ctr.NewTask(ctx, d.creator(nil, &out, nil), client.WithTaskStart)
	if err != nil {
		t.Fatal(err)
	}
	deleteTaskOnCleanup(t, task)
	if task.Pid() == 0 {
		t.Error("Pid is 0 after NewTask")
	}
	// It runs or has exited; it is never merely created.
	if st, err := task.Status(ctx); err != nil || (st.Status != client.Running && st.Status != client.Stopped) {
		t.Errorf("status after NewTask with WithTaskStart: %+v, %v; want running or stopped", st, err)
	}
	if st := receiveExit(t, mustWait(t, ctx, task)); st.ExitCode() != 7 {
		t.Errorf("wait: exit %d, want 7", st.ExitCode())
	}
	if err := task.Start(ctx); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("Start of a task started by NewTask: %v, want ErrFailedPrecondition", err)
	}
	task.IO().Wait()
	if got := out.String(); got != "out\n" {
		t.Errorf("stdout %q, want %q", got, "out\n")
	}
	del, err := task.Delete(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if del.ExitCode() != 7 {
		t.Errorf("delete: exit %d, want 7", del.ExitCode())
	}

	// The events of the task, in order, each once: the delete is the
	// last the shim publishes, so nothing can follow it.
	var got []string
	timeout := time.After(15 * time.Second)
	for len(got) == 0 || got[len(got)-1] != "/tasks/delete" {
		select {
		case env, ok := <-evs:
			if !ok {
				t.Fatalf("subscription ended: %v", <-errs)
			}
			if env.Topic != "/containers/update" && eventContainer(t, env) == "run-at-once" {
				got = append(got, env.Topic)
			}
		case <-timeout:
			t.Fatalf("events so far %v: no /tasks/delete", got)
		}
	}
	if len(got) != len(topics) {
		t.Errorf("events %v, want %v", got, topics)
	} else {
		for i := range topics {
			if got[i] != topics[i] {
				t.Errorf("events %v, want %v", got, topics)
				break
			}
		}
	}

	// stdin: cat ends only at the end of its stdin, which NewTask
	// arranged as Start does.
	ctr = newClientContainer(t, c, ctx, "run-at-once-stdin", []string{"sh", "-c", "cat; exit 3"})
	out = testutil.Buffer{}
	stdin, stdinW := io.Pipe()
	defer stdinW.Close()
	task, err = ctr.NewTask(ctx, d.creator(stdin, &out, nil), client.WithTaskStart)
	if err != nil {
		t.Fatal(err)
	}
	deleteTaskOnCleanup(t, task)
	exitc := mustWait(t, ctx, task)
	requireStatus(t, ctx, task, client.Running)
	if _, err := io.WriteString(stdinW, "in\n"); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "stdin echoed", func() bool { return out.String() == "in\n" })
	stdinW.Close()
	if st := receiveExit(t, exitc); st.ExitCode() != 3 {
		t.Errorf("exit after the end of stdin: %d, want 3", st.ExitCode())
	}
}

// eventContainer returns the container id of a task event.
func eventContainer(t *testing.T, env *events.Envelope) string {
	t.Helper()
	msg, err := env.Event.UnmarshalNew()
	if err != nil {
		t.Fatalf("event %s: %v", env.Topic, err)
	}
	e, ok := msg.(interface{ GetContainerId() string })
	if !ok {
		t.Fatalf("event %s (%T) names no container", env.Topic, msg)
	}
	return e.GetContainerId()
}

// testClientCleanupOnExit runs a task with WithTaskCleanupOnExit: the
// runtime's container is gone once the task exited, before Delete, which
// still reports the exit status.
func testClientCleanupOnExit(t *testing.T, d *daemon, c *client.Client) {
	ctx := clientContext(t)
	ctr := newClientContainer(t, c, ctx, "cleanup-on-exit", []string{"sh", "-c", "exit 9"})
	ns := c.DefaultNamespace()
	task, err := ctr.NewTask(ctx, d.creator(nil, nil, nil), client.WithTaskStart, client.WithTaskCleanupOnExit)
	if err != nil {
		t.Fatal(err)
	}
	deleteTaskOnCleanup(t, task)
	if st := receiveExit(t, mustWait(t, ctx, task)); st.ExitCode() != 9 {
		t.Errorf("wait: exit %d, want 9", st.ExitCode())
	}
	root := filepath.Join(d.state, ".runc", ns)
	if _, err := os.Stat(root); err != nil {
		t.Fatalf("the namespace's runtime root: %v", err) // else the check below proves nothing
	}
	eventually(t, 30*time.Second, "the runtime's container deleted after the exit", func() bool {
		return exec.Command("runc", "--root", root, "state", ctr.ID()).Run() != nil
	})
	del, err := task.Delete(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if del.ExitCode() != 9 {
		t.Errorf("delete: exit %d, want 9", del.ExitCode())
	}
}
