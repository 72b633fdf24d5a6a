package integration

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/proc"
	containersv1 "github.com/berthrt/berth/proto/containers/v1"
	eventsv1 "github.com/berthrt/berth/proto/events/v1"
	namespacesv1 "github.com/berthrt/berth/proto/namespaces/v1"
	tasksv1 "github.com/berthrt/berth/proto/tasks/v1"
	"github.com/berthrt/berth/shimapi"
)

// execTrue runs `sh -c "exit code"` as exec process eid in task id and
// checks its exit status.
func execTrue(t *testing.T, ctx context.Context, a *api, id, eid string, code int) {
	t.Helper()
	proc, err := json.Marshal(specs.Process{
		Args: []string{"sh", "-c", "exit " + string(rune('0'+code))},
		Cwd:  "/",
		Env:  []string{"PATH=/bin"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.tasks.Exec(ctx, &tasksv1.ExecProcessRequest{ContainerId: id, ExecId: eid, Spec: proc, Stdio: &shimapi.Stdio{}}); err != nil {
		t.Fatalf("exec in %s: %v", id, err)
	}
	if _, err := a.tasks.Start(ctx, &tasksv1.StartRequest{ContainerId: id, ExecId: eid}); err != nil {
		t.Fatalf("start exec in %s: %v", id, err)
	}
	resp, err := a.tasks.Wait(ctx, &tasksv1.WaitRequest{ContainerId: id, ExecId: eid})
	if err != nil {
		t.Fatal(err)
	}
	if resp.ExitStatus != uint32(code) {
		t.Errorf("exec %s in %s: exit %d, want %d", eid, id, resp.ExitStatus, code)
	}
	if _, err := a.tasks.DeleteProcess(ctx, &tasksv1.DeleteProcessRequest{ContainerId: id, ExecId: eid}); err != nil {
		t.Errorf("delete exec %s: %v", eid, err)
	}
}

// TestDaemonUpgrade replaces berthd with a build of another version while
// containers run: the new daemon reports its version and controls them.
func TestDaemonUpgrade(t *testing.T) {
	d := newDaemon(t)
	ctx := d.nsContext("upgrade")
	a := d.api()
	// PID 1 ignores signals it has no handler for: trap TERM.
	a.run(t, ctx, "before", []string{"sh", "-c", "trap 'exit 7' TERM; while :; do sleep 0.1; done"})
	v, err := a.version.Version(ctx, &emptypb.Empty{})
	if err != nil {
		t.Fatal(err)
	}

	next := filepath.Join(t.TempDir(), "berthd-next")
	const nextVersion = "v9.9.9-upgrade-drill"
	build := exec.Command("go", "build", "-o", next, "-ldflags", "-X github.com/berthrt/berth/version.Version="+nextVersion, "./cmd/daemon")
	build.Dir = repoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the next berthd: %v\n%s", err, out)
	}
	d.kill()
	d.bin = next
	d.start()
	a = d.api()
	nv, err := a.version.Version(ctx, &emptypb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	if nv.Version != nextVersion || nv.Version == v.Version {
		t.Fatalf("version after upgrade %q (before %q), want %q", nv.Version, v.Version, nextVersion)
	}
	execTrue(t, ctx, a, "before", "after-upgrade", 3)
	if _, err := a.tasks.Kill(ctx, &tasksv1.KillRequest{ContainerId: "before", Signal: 15}); err != nil {
		t.Fatal(err)
	}
	if got := a.wait(t, ctx, "before"); got != 7 {
		t.Errorf("exit after SIGTERM: %d, want 7 (its trap)", got)
	}
	if _, err := a.tasks.Delete(ctx, &tasksv1.DeleteTaskRequest{ContainerId: "before"}); err != nil {
		t.Fatal(err)
	}
}

// TestDaemonNamespacesIsolate: what is made in one namespace is invisible
// in another, and a namespace that holds something cannot be deleted.
func TestDaemonNamespacesIsolate(t *testing.T) {
	d := newDaemon(t)
	a := d.api()
	ctxA, ctxB := d.nsContext("iso-a"), d.nsContext("iso-b")
	a.run(t, ctxA, "only-in-a", []string{"sleep", "3600"})
	if _, err := a.namespaces.Create(ctxB, &namespacesv1.CreateNamespaceRequest{Namespace: &namespacesv1.Namespace{Name: "iso-b"}}); err != nil {
		t.Fatal(err)
	}

	if _, err := a.containers.Get(ctxB, &containersv1.GetContainerRequest{Id: "only-in-a"}); !errdefs.IsNotFound(err) {
		t.Errorf("container of iso-a seen from iso-b: %v", err)
	}
	if _, err := a.tasks.Get(ctxB, &tasksv1.GetRequest{ContainerId: "only-in-a"}); !errdefs.IsNotFound(err) {
		t.Errorf("task of iso-a seen from iso-b: %v", err)
	}
	if _, err := a.tasks.Kill(ctxB, &tasksv1.KillRequest{ContainerId: "only-in-a", Signal: 9}); !errdefs.IsNotFound(err) {
		t.Errorf("task of iso-a killed from iso-b: %v", err)
	}
	for _, ctx := range []context.Context{ctxB} {
		cs, err := a.containers.List(ctx, &containersv1.ListContainersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		ts, err := a.tasks.List(ctx, &tasksv1.ListTasksRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(cs.Containers) != 0 || len(ts.Tasks) != 0 {
			t.Errorf("iso-b lists %d containers and %d tasks, want none", len(cs.Containers), len(ts.Tasks))
		}
	}
	_, err := a.namespaces.Delete(ctxA, &namespacesv1.DeleteNamespaceRequest{Name: "iso-a"})
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "container") {
		t.Errorf("delete of a namespace holding a container: %v, want failed precondition naming it", err)
	}
	if _, err := a.containers.Delete(ctxA, &containersv1.DeleteContainerRequest{Id: "only-in-a"}); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("delete of a container with a running task: %v, want failed precondition", err)
	}
	if _, err := a.namespaces.Delete(ctxB, &namespacesv1.DeleteNamespaceRequest{Name: "iso-b"}); err != nil {
		t.Errorf("delete of an empty namespace: %v", err)
	}
}

// TestDaemonBadIdentifiers: bad names get InvalidArgument and create
// nothing.
func TestDaemonBadIdentifiers(t *testing.T) {
	d := newDaemon(t)
	a := d.api()
	ctx := d.nsContext("ids")
	bad := []string{"", "../x", "a/b", strings.Repeat("x", 300), "nul\x00byte", ".hidden"}
	for _, id := range bad {
		_, err := a.containers.Create(ctx, &containersv1.CreateContainerRequest{Container: &containersv1.Container{
			Id: id, Spec: containerSpec(t, "ids", "x", []string{"true"}),
		}})
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("container id %q: %v, want invalid argument", id, err)
		}
		_, err = a.namespaces.Create(ctx, &namespacesv1.CreateNamespaceRequest{Namespace: &namespacesv1.Namespace{Name: id}})
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("namespace %q: %v, want invalid argument", id, err)
		}
		_, err = a.tasks.Create(ctx, &tasksv1.CreateTaskRequest{ContainerId: id})
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("task of container %q: %v, want invalid argument", id, err)
		}
		if id != "" {
			badCtx := d.nsContext(id)
			_, err = a.containers.List(badCtx, &containersv1.ListContainersRequest{})
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("list in namespace %q: %v, want invalid argument", id, err)
			}
		}
	}
	cs, err := a.containers.List(ctx, &containersv1.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	nss, err := a.namespaces.List(ctx, &namespacesv1.ListNamespacesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cs.Containers) != 0 || len(nss.Namespaces) != 0 {
		t.Errorf("bad input created %d containers, %d namespaces", len(cs.Containers), len(nss.Namespaces))
	}
	// The daemon's own: its sockets and the folder of its spare shims.
	entries, _ := os.ReadDir(d.state)
	var left []string
	for _, e := range entries {
		if n := e.Name(); n != "berth.sock" && n != "cri.sock" && n != ".spare" {
			left = append(left, n)
		}
	}
	if len(left) > 0 {
		t.Errorf("bad input left files in the state folder: %v", left)
	}
	// A task for a container that does not exist is NotFound.
	if _, err := a.tasks.Create(ctx, &tasksv1.CreateTaskRequest{ContainerId: "absent"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("task of a missing container: %v, want not found", err)
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(wd)
}

// TestDaemonShimDeath: a shim SIGKILLed while the daemon runs is noticed
// within about a second; its task is reported exited (137, as nothing
// recorded another status), once, and nothing of it is left.
func TestDaemonShimDeath(t *testing.T) {
	d := newDaemon(t)
	const ns = "death"
	ctx := d.nsContext(ns)
	a := d.api()
	sub := a.subscribe(t, &eventsv1.SubscribeRequest{Filters: []string{`topic=="/tasks/exit"`}})
	pid := a.run(t, ctx, "victim", []string{"sleep", "3600"})
	shimPid, err := shimapi.ReadPidFile(d.bundle(ns, "victim"))
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan uint32, 1)
	go func() {
		resp, err := a.tasks.Wait(ctx, &tasksv1.WaitRequest{ContainerId: "victim"})
		if err != nil {
			t.Errorf("wait: %v", err)
			waited <- 0
			return
		}
		waited <- resp.ExitStatus
	}()
	time.Sleep(100 * time.Millisecond) // the Wait is in flight
	killed := time.Now()
	if err := syscall.Kill(shimPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case st := <-waited:
		if st != 137 {
			t.Errorf("wait after the shim died: %d, want 137", st)
		}
		t.Logf("shim death reported to a waiter after %v", time.Since(killed))
	case <-time.After(time.Minute):
		t.Fatal("a waiter was not told of the shim's death")
	}
	eventually(t, time.Minute, "the container's process to be gone", func() bool { return !proc.Alive(int(pid)) })
	if m := mountsUnder(d.bundle(ns, "victim")); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
	if _, err := os.Stat(filepath.Join(d.state, ".runc", ns, "victim")); !os.IsNotExist(err) {
		t.Errorf("runc state left (%v)", err)
	}
	eventually(t, time.Minute, "the /tasks/exit event", func() bool {
		return len(sub.matching(func(*eventsv1.Envelope) bool { return true })) > 0
	})
	time.Sleep(300 * time.Millisecond) // room for a duplicate to show
	if n := len(sub.matching(func(*eventsv1.Envelope) bool { return true })); n != 1 {
		t.Errorf("%d /tasks/exit events, want 1", n)
	}
	if _, err := a.tasks.Delete(ctx, &tasksv1.DeleteTaskRequest{ContainerId: "victim"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d.bundle(ns, "victim")); !os.IsNotExist(err) {
		t.Errorf("bundle left after delete (%v)", err)
	}
}
