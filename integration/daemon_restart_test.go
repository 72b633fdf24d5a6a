package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthrt/berth/internal/proc"
	"github.com/berthrt/berth/oci"
	eventsv1 "github.com/berthrt/berth/proto/events/v1"
	tasksv1 "github.com/berthrt/berth/proto/tasks/v1"
	"github.com/berthrt/berth/shimapi"
)

// TestDaemonRestartDrill: 20 running containers; berthd is SIGKILLed;
// while it is down 5 containers exit with distinct codes and 2 shims are
// SIGKILLed; a new berthd finds the 13 running and controllable, reports
// the 5 with their true exit codes exactly once (Wait and /tasks/exit), and
// the 2 as exited, leaving no process, mount or runc state.
func TestDaemonRestartDrill(t *testing.T) {
	d := newDaemon(t)
	const ns = "drill"
	ctx := d.nsContext(ns)
	a := d.api()

	// The exiting containers wait for a file in a folder bound into them.
	triggers := t.TempDir()
	bind := oci.WithMounts([]specs.Mount{{Destination: "/trigger", Type: "bind", Source: triggers, Options: []string{"rbind", "ro"}}})
	running, exiting, killed := ids("run", 13), ids("exit", 5), ids("lost", 2)
	for _, id := range append(append(running[:0:0], running...), killed...) {
		a.run(t, ctx, id, []string{"sleep", "3600"})
	}
	for i, id := range exiting {
		script := fmt.Sprintf("while [ ! -e /trigger/%s ]; do sleep 0.05; done; exit %d", id, 11+i)
		a.run(t, ctx, id, []string{"sh", "-c", script}, bind)
	}
	lostPids := map[string]uint32{}
	for _, id := range killed {
		resp, err := a.tasks.Get(ctx, &tasksv1.GetRequest{ContainerId: id})
		if err != nil {
			t.Fatal(err)
		}
		lostPids[id] = resp.Process.Pid
	}
	beforeKill := time.Now()

	d.kill()
	for _, id := range exiting {
		if err := os.WriteFile(filepath.Join(triggers, id), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range exiting {
		eventually(t, time.Minute, id+"'s exit file", func() bool {
			_, err := shimapi.ReadExitFile(d.bundle(ns, id))
			return err == nil
		})
	}
	shimPids := map[string]int{}
	for _, id := range killed {
		pid, err := shimapi.ReadPidFile(d.bundle(ns, id))
		if err != nil {
			t.Fatal(err)
		}
		shimPids[id] = pid
		syscall.Kill(pid, syscall.SIGKILL)
	}

	d.start()
	a = d.api()
	sub := a.subscribe(t, &eventsv1.SubscribeRequest{Filters: []string{`topic=="/tasks/exit"`}, Since: timestamppb.New(beforeKill)})

	// The 5 exited with their own codes.
	for i, id := range exiting {
		if got := a.wait(t, ctx, id); got != uint32(11+i) {
			t.Errorf("%s: exit status %d, want %d", id, got, 11+i)
		}
	}
	// The 2 whose shims died: exited (137: killed with their shim), and
	// nothing of them is left.
	for _, id := range killed {
		if got := a.wait(t, ctx, id); got != 137 {
			t.Errorf("%s: exit status %d, want 137", id, got)
		}
		resp, err := a.tasks.Get(ctx, &tasksv1.GetRequest{ContainerId: id})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Process.Status != shimapi.Status_STATUS_STOPPED {
			t.Errorf("%s: status %v, want stopped", id, resp.Process.Status)
		}
		eventually(t, time.Minute, id+"'s processes to be gone", func() bool {
			return !proc.Alive(shimPids[id]) && !proc.Alive(int(lostPids[id]))
		})
		if m := mountsUnder(d.bundle(ns, id)); len(m) > 0 {
			t.Errorf("%s: mounts left: %v", id, m)
		}
		if _, err := os.Stat(filepath.Join(d.state, ".runc", ns, id)); !os.IsNotExist(err) {
			t.Errorf("%s: runc state left (%v)", id, err)
		}
	}
	// The 13 run and are controllable: exec, kill, wait.
	for _, id := range running {
		resp, err := a.tasks.Get(ctx, &tasksv1.GetRequest{ContainerId: id})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Process.Status != shimapi.Status_STATUS_RUNNING {
			t.Errorf("%s: status %v, want running", id, resp.Process.Status)
		}
	}
	execTrue(t, ctx, a, running[0], "probe", 0)
	for _, id := range running {
		if _, err := a.tasks.Kill(ctx, &tasksv1.KillRequest{ContainerId: id, Signal: uint32(syscall.SIGKILL)}); err != nil {
			t.Fatal(err)
		}
		if got := a.wait(t, ctx, id); got != 137 {
			t.Errorf("%s: exit status %d after SIGKILL, want 137", id, got)
		}
	}

	// Exactly one /tasks/exit per exited task, with its status.
	want := map[string]uint32{}
	for i, id := range exiting {
		want[id] = uint32(11 + i)
	}
	for _, id := range append(killed, running...) {
		want[id] = 137
	}
	eventually(t, time.Minute, "an exit event of every task", func() bool {
		return len(sub.matching(func(*eventsv1.Envelope) bool { return true })) >= len(want)
	})
	time.Sleep(500 * time.Millisecond) // room for a duplicate to show
	seen := map[string]int{}
	for _, env := range sub.matching(func(*eventsv1.Envelope) bool { return true }) {
		var exit shimapi.TaskExit
		if err := env.Event.UnmarshalTo(&exit); err != nil {
			t.Fatal(err)
		}
		if exit.ExecId != "" {
			continue
		}
		seen[exit.ContainerId]++
		if exit.ExitStatus != want[exit.ContainerId] {
			t.Errorf("/tasks/exit of %s: status %d, want %d", exit.ContainerId, exit.ExitStatus, want[exit.ContainerId])
		}
	}
	for id := range want {
		if seen[id] != 1 {
			t.Errorf("/tasks/exit of %s seen %d times, want once", id, seen[id])
		}
	}

	// Deleting the tasks leaves an empty state folder for the namespace.
	for id := range want {
		if _, err := a.tasks.Delete(ctx, &tasksv1.DeleteTaskRequest{ContainerId: id}); err != nil {
			t.Errorf("delete %s: %v", id, err)
		}
	}
	if left, _ := os.ReadDir(filepath.Join(d.state, ns)); len(left) != 0 {
		t.Errorf("bundles left after delete: %d", len(left))
	}
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}
