package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/apiconv"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/mount"
	"github.com/berthrt/berth/namespaces"
	"github.com/berthrt/berth/oci"
	containersv1 "github.com/berthrt/berth/proto/containers/v1"
	gcv1 "github.com/berthrt/berth/proto/gc/v1"
	introspectionv1 "github.com/berthrt/berth/proto/introspection/v1"
	tasksv1 "github.com/berthrt/berth/proto/tasks/v1"
	typesv1 "github.com/berthrt/berth/proto/types/v1"
	"github.com/berthrt/berth/snapshots"
	"github.com/berthrt/berth/snapshots/proxy/proxytest"
	"github.com/berthrt/berth/storage/snapshots/snapshotstest"
)

// proxyName is the proxy plugin that newProxyDaemon configures.
const proxyName = "myproxy"

// newProxyDaemon starts the external native-snapshotter and a daemon with
// it configured as the proxy plugin proxyName. Garbage collection runs
// only when a test asks for it: snapshots that nothing holds (no lease, no
// container) would go at the collection that follows any delete.
func newProxyDaemon(t *testing.T) (*daemon, *proxytest.Program) {
	t.Helper()
	testutil.RequireRoot(t, "runc", "busybox")
	prog := proxytest.Start(t, filepath.Join(t.TempDir(), "native"))
	d := newDaemon(t)
	d.kill()
	f, err := os.OpenFile(d.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = fmt.Fprintf(f, "[gc]\ninterval = \"0s\"\ndelete_delay = \"1h\"\n[proxy_plugins.%s]\ntype = \"snapshot\"\naddress = %q\n",
		proxyName, prog.Address)
	if err = errors.Join(err, f.Close()); err != nil {
		t.Fatal(err)
	}
	d.start()
	return d, prog
}

// The shared suite against berthd's snapshotters through the Go client:
// overlayfs, native and the proxy plugin. Each run of the suite gets a
// namespace of its own, so that the runs share one daemon.
func TestSnapshotsSuiteThroughDaemon(t *testing.T) {
	d, _ := newProxyDaemon(t)
	c := d.client(t, "unused")
	var mu sync.Mutex
	roots := map[string]string{} // guarded by mu: the suite's root to its namespace
	for _, name := range []string{"overlayfs", "native", proxyName} {
		snapshotstest.Run(t, "berthd-"+name, func(root string) (snapshots.Snapshotter, error) {
			mu.Lock()
			defer mu.Unlock()
			ns, ok := roots[root]
			if !ok {
				ns = fmt.Sprintf("suite-%d", len(roots))
				roots[root] = ns
				d.namespacesUsed.Store(ns, true)
			}
			return inNamespace{c.SnapshotService(name), ns}, nil
		})
	}
}

// A key prepared in one namespace is NotFound in another, which may use
// the same key for a snapshot of its own.
func TestSnapshotsNamespacesIsolate(t *testing.T) {
	d := newDaemon(t)
	c := d.client(t, "unused")
	for _, name := range []string{"overlayfs", "native"} {
		t.Run(name, func(t *testing.T) {
			sn := c.SnapshotService(name)
			a, b := d.nsContext("iso-a"), d.nsContext("iso-b")
			if _, err := sn.Prepare(a, "k", ""); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { sn.Remove(a, "k") })
			if _, err := sn.Stat(b, "k"); !errdefs.IsNotFound(err) {
				t.Fatalf("Stat in another namespace: %v, want not found", err)
			}
			if _, err := sn.Mounts(b, "k"); !errdefs.IsNotFound(err) {
				t.Fatalf("Mounts in another namespace: %v, want not found", err)
			}
			if err := sn.Remove(b, "k"); !errdefs.IsNotFound(err) {
				t.Fatalf("Remove in another namespace: %v, want not found", err)
			}
			if _, err := sn.Prepare(b, "k", ""); err != nil {
				t.Fatalf("the same key in another namespace: %v", err)
			}
			t.Cleanup(func() { sn.Remove(b, "k") })
			for _, ctx := range []context.Context{a, b} {
				var keys []string
				if err := sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
					keys = append(keys, info.Name)
					return nil
				}); err != nil || len(keys) != 1 {
					t.Errorf("Walk: %v %v, want one key", keys, err)
				}
			}
		})
	}
	if _, err := c.SnapshotService("zfs").Stat(d.nsContext("iso-a"), "k"); !errdefs.IsNotFound(err) {
		t.Errorf("an unknown snapshotter: %v, want not found", err)
	}
}

// A daemon with a proxy plugin serves it as typed on the command line, and
// lists it in introspection.
func TestSnapshotsProxyPluginCtl(t *testing.T) {
	d, prog := newProxyDaemon(t)
	ctl := newCtl(t, d)
	d.namespacesUsed.Store("x", true)
	sn := []string{"-n", "x", "snapshots", "--snapshotter", proxyName}
	ctl.ok(append(sn, "prepare", "--label", "owner=test", "k1")...)
	out := ctl.ok(append(sn, "mounts", "/mnt/t", "k1")...)
	if !strings.HasPrefix(out, "mount -t bind ") || !strings.Contains(out, " /mnt/t -o rbind,rw") {
		t.Errorf("mounts: %q", out)
	}
	out = ctl.ok(append(sn, "ls")...)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[1], "k1 ") ||
		!strings.Contains(lines[1], "active") || !strings.Contains(lines[1], "owner=test") {
		t.Errorf("ls:\n%s", out)
	}
	if out := ctl.ok("-n", "other", "sn", "--snapshotter", proxyName, "ls", "-q"); out != "" {
		t.Errorf("ls in another namespace: %q", out)
	}
	var info struct{ Name, Kind string }
	if err := json.Unmarshal([]byte(ctl.ok(append(sn, "info", "--format", "json", "k1")...)), &info); err != nil || info.Name != "k1" || info.Kind != "active" {
		t.Errorf("info: %+v %v", info, err)
	}
	if r := ctl.run(append(sn, "commit", "base", "nope")...); r.code == 0 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("commit of a missing key: exit %d, %q", r.code, r.stderr)
	}
	ctl.ok(append(sn, "commit", "base", "k1")...)
	ctl.ok(append(sn, "view", "v1", "base")...)
	if out := ctl.ok(append(sn, "tree")...); out != "base (committed)\n\\_ v1 (view)\n" {
		t.Errorf("tree:\n%s", out)
	}
	ctl.ok(append(sn, "label", "base", "a=b")...)
	if out := ctl.ok(append(sn, "usage", "base")...); !strings.Contains(out, "base") {
		t.Errorf("usage:\n%s", out)
	}
	ctl.ok(append(sn, "rm", "v1", "base")...)
	if out := ctl.ok(append(sn, "ls", "-q")...); out != "" {
		t.Errorf("ls after rm: %q", out)
	}
	// The records are gone; after a garbage collection no snapshot that no
	// namespace records is left in the external snapshotter.
	ctx := d.nsContext("x")
	if _, err := gcv1.NewGCClient(d.api().conn).Collect(ctx, &gcv1.CollectRequest{}); err != nil {
		t.Errorf("collect: %v", err)
	}
	backend := prog.Connect(t)
	defer backend.Close()
	if err := backend.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		return fmt.Errorf("snapshot %q left in the external snapshotter", info.Name)
	}); err != nil {
		t.Error(err)
	}

	resp, err := d.api().introspection.Services(context.Background(), &introspectionv1.ServicesRequest{
		Filters: []string{`type=="berth.snapshotter.v1"`},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, why := map[string]string{}, map[string]string{}
	for _, s := range resp.GetServices() {
		got[s.GetId()], why[s.GetId()] = s.GetStatus(), s.GetError()
	}
	// btrfs is listed, with the reason it is not available: the test's
	// root is not on btrfs (TestBtrfsSnapshotter puts it on one).
	if len(got) != 4 || got["overlayfs"] != "ok" || got["native"] != "ok" || got[proxyName] != "ok" ||
		got["btrfs"] != "error" || !strings.Contains(why["btrfs"], "not on a btrfs filesystem") {
		t.Errorf("introspection: %v, errors %v", got, why)
	}
}

// A container runs on a snapshot made through the API, on every
// snapshotter: busybox is put into a committed snapshot, the container's
// rootfs is an active snapshot on it, given to tasks Create as its mounts,
// and what the container writes is in the snapshot afterwards.
func TestSnapshotsContainerRootfs(t *testing.T) {
	d, _ := newProxyDaemon(t)
	c := d.client(t, "snap")
	a := d.api()
	ctl := newCtl(t, d)
	for _, name := range []string{"overlayfs", "native", proxyName} {
		t.Run(name, func(t *testing.T) {
			ctx := d.nsContext("snap")
			sn := c.SnapshotService(name)
			mounts, err := sn.Prepare(ctx, "base-active", "")
			if err != nil {
				t.Fatal(err)
			}
			withMounted(t, mounts, func(dir string) {
				if err := testutil.MakeBusyboxRootfs("/bin/busybox", dir); err != nil {
					t.Fatal(err)
				}
			})
			if err := sn.Commit(ctx, "base", "base-active"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { sn.Remove(ctx, "base") })
			ctl.ok("-n", "snap", "snapshots", "--snapshotter", name, "prepare", "ctr-rootfs", "base")
			t.Cleanup(func() { sn.Remove(ctx, "ctr-rootfs") })
			out := ctl.ok("-n", "snap", "snapshots", "--snapshotter", name, "mounts", "/tmp/x", "ctr-rootfs")
			if !strings.HasPrefix(out, "mount -t ") {
				t.Errorf("mounts: %q", out)
			}
			mounts, err = sn.Mounts(ctx, "ctr-rootfs")
			if err != nil {
				t.Fatal(err)
			}

			id := "on-" + name
			spec, err := oci.GenerateSpec(ctx, "snap", id, oci.WithRootFSPath("rootfs"),
				oci.WithProcessArgs("sh", "-c", "echo written > /written && cat /etc/group"))
			if err != nil {
				t.Fatal(err)
			}
			data, err := json.Marshal(spec)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := a.containers.Create(ctx, &containersv1.CreateContainerRequest{Container: &containersv1.Container{
				Id: id, Spec: data, Snapshotter: name, SnapshotKey: "ctr-rootfs",
			}}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { a.containers.Delete(context.WithoutCancel(ctx), &containersv1.DeleteContainerRequest{Id: id}) })
			stdout := filepath.Join(t.TempDir(), "stdout")
			if _, err := a.tasks.Create(ctx, &tasksv1.CreateTaskRequest{
				ContainerId: id, Rootfs: apiconv.MountsToProto(mounts),
				Stdio: &typesv1.Stdio{Stdout: "file://" + stdout},
			}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { a.tasks.Delete(context.WithoutCancel(ctx), &tasksv1.DeleteTaskRequest{ContainerId: id}) })
			if _, err := a.tasks.Start(ctx, &tasksv1.StartRequest{ContainerId: id}); err != nil {
				t.Fatal(err)
			}
			if code := a.wait(t, ctx, id); code != 0 {
				t.Fatalf("exit status %d", code)
			}
			if got, _ := os.ReadFile(stdout); !strings.HasPrefix(string(got), "root:x:0:") {
				t.Errorf("stdout %q, want busybox's /etc/group", got)
			}
			if _, err := a.tasks.Delete(ctx, &tasksv1.DeleteTaskRequest{ContainerId: id}); err != nil {
				t.Fatal(err)
			}
			withMounted(t, mounts, func(dir string) {
				if got, err := os.ReadFile(filepath.Join(dir, "written")); err != nil || string(got) != "written\n" {
					t.Errorf("the container's file in the snapshot: %q %v", got, err)
				}
			})
		})
	}
}

// withMounted mounts mounts on a new folder, runs fn on it and unmounts
// it, also when fn fails the test.
func withMounted(t *testing.T, mounts []mount.Mount, fn func(dir string)) {
	t.Helper()
	dir, err := os.MkdirTemp("", "berth-snap-")
	if err != nil {
		t.Fatal(err)
	}
	done := false
	cleanup := func() {
		if done {
			return
		}
		done = true
		if err := mount.UnmountAll(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	}
	t.Cleanup(cleanup)
	if err := mount.All(mounts, dir); err != nil {
		t.Fatalf("mount %v: %v", mounts, err)
	}
	fn(dir)
	cleanup()
}

// inNamespace is a snapshotter whose calls act in namespace ns.
type inNamespace struct {
	sn snapshots.Snapshotter
	ns string
}

func (s inNamespace) ctx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, s.ns)
}

func (s inNamespace) Stat(ctx context.Context, key string) (snapshots.Info, error) {
	return s.sn.Stat(s.ctx(ctx), key)
}

func (s inNamespace) Update(ctx context.Context, info snapshots.Info, fieldpaths ...string) (snapshots.Info, error) {
	return s.sn.Update(s.ctx(ctx), info, fieldpaths...)
}

func (s inNamespace) Usage(ctx context.Context, key string) (snapshots.Usage, error) {
	return s.sn.Usage(s.ctx(ctx), key)
}

func (s inNamespace) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	return s.sn.Mounts(s.ctx(ctx), key)
}

func (s inNamespace) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return s.sn.Prepare(s.ctx(ctx), key, parent, opts...)
}

func (s inNamespace) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return s.sn.View(s.ctx(ctx), key, parent, opts...)
}

func (s inNamespace) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	return s.sn.Commit(s.ctx(ctx), name, key, opts...)
}

func (s inNamespace) Remove(ctx context.Context, key string) error {
	return s.sn.Remove(s.ctx(ctx), key)
}

func (s inNamespace) Walk(ctx context.Context, fn snapshots.WalkFunc, filters ...string) error {
	return s.sn.Walk(s.ctx(ctx), fn, filters...)
}

func (s inNamespace) Close() error { return s.sn.Close() }
