package metadata

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/leases"
	"github.com/berthrt/berth/snapshots"
	"github.com/berthrt/berth/storage/snapshots/native"
	"github.com/berthrt/berth/storage/snapshots/overlay"
	"github.com/berthrt/berth/storage/snapshots/snapshotstest"
)

// closing is a namespaced view that closes its DB too, for the suite.
type closing struct {
	snapshots.Snapshotter
	db *DB
}

func (c closing) Close() error {
	return errors.Join(c.Snapshotter.Close(), c.db.Close())
}

func TestNamespacedSnapshotsSuite(t *testing.T) {
	for name, open := range map[string]func(string) (snapshots.Snapshotter, error){
		overlay.Name: overlay.New,
		native.Name:  native.New,
	} {
		snapshotstest.Run(t, "namespaced-"+name, func(root string) (snapshots.Snapshotter, error) {
			db, err := Open(filepath.Join(root, "meta.db"))
			if err != nil {
				return nil, err
			}
			sn, err := open(filepath.Join(root, "snapshots", name))
			if err != nil {
				return nil, errors.Join(err, db.Close())
			}
			return closing{db.Snapshotter(name, sn), db}, nil
		})
	}
}

// newSnapshotEnv returns a DB and the namespaced view of a native
// snapshotter, and the snapshotter underneath.
func newSnapshotEnv(t *testing.T) (*DB, snapshots.Snapshotter, snapshots.Snapshotter) {
	t.Helper()
	db, _ := newTestDB(t)
	backend, err := native.New(filepath.Join(t.TempDir(), "native"))
	requireNoErr(t, err)
	t.Cleanup(func() { backend.Close() })
	return db, db.Snapshotter(native.Name, backend), backend
}

func backendKeys(t *testing.T, sn snapshots.Snapshotter) []string {
	t.Helper()
	var keys []string
	requireNoErr(t, sn.Walk(context.Background(), func(_ context.Context, info snapshots.Info) error {
		keys = append(keys, info.Name)
		return nil
	}))
	return keys
}

func TestSnapshotNamespacesIsolated(t *testing.T) {
	_, sn, backend := newSnapshotEnv(t)
	a, b := nsCtx("a"), nsCtx("b")
	for _, ctx := range []context.Context{a, b} {
		_, err := sn.Prepare(ctx, "sha256:layer", "", snapshots.WithLabels(map[string]string{"ns": "x"}))
		requireNoErr(t, err)
	}
	requireNoErr(t, sn.Commit(a, "layer", "sha256:layer"))
	if info, err := sn.Stat(b, "sha256:layer"); err != nil || info.Kind != snapshots.KindActive {
		t.Errorf("b's snapshot after a's commit: %+v, %v", info, err)
	}
	if _, err := sn.Stat(b, "layer"); !errdefs.IsNotFound(err) {
		t.Errorf("a's committed snapshot seen from b: %v", err)
	}
	if _, err := sn.Prepare(b, "child", "layer"); !errdefs.IsNotFound(err) {
		t.Errorf("b used a's snapshot as parent: %v", err)
	}
	if _, err := sn.Prepare(context.Background(), "x", ""); err == nil {
		t.Error("Prepare without a namespace succeeded")
	}
	requireNoErr(t, sn.Remove(b, "sha256:layer"))
	if _, err := sn.Stat(a, "layer"); err != nil {
		t.Errorf("a's snapshot after b's remove: %v", err)
	}
	if got := backendKeys(t, backend); len(got) != 2 {
		t.Errorf("backend holds %q, want two until GC", got)
	}
}

func TestSnapshotRefLabel(t *testing.T) {
	db, sn, _ := newSnapshotEnv(t)
	ctx := nsCtx("ci")
	_, err := db.Leases().Create(ctx, leases.Lease{ID: "pull"})
	requireNoErr(t, err)
	lctx := leases.WithLease(ctx, "pull")
	ref := snapshots.WithLabels(map[string]string{snapshots.LabelSnapshotRef: "sha256:chain"})
	_, err = sn.Prepare(lctx, "extract-1", "", ref)
	requireNoErr(t, err)
	requireNoErr(t, sn.Commit(lctx, "sha256:chain", "extract-1"))
	// A second pull, under its own lease, finds the target: its Prepare
	// is refused, and the target is put under its lease (the first pull's
	// lease may end before the second pull's image is recorded).
	_, err = db.Leases().Create(ctx, leases.Lease{ID: "pull-2"})
	requireNoErr(t, err)
	lctx2 := leases.WithLease(ctx, "pull-2")
	if _, err := sn.Prepare(lctx2, "extract-2", "", ref); !errdefs.IsAlreadyExists(err) {
		t.Errorf("Prepare of a target that exists: %v, want already exists", err)
	}
	if _, err := sn.Stat(ctx, "extract-2"); !errdefs.IsNotFound(err) {
		t.Errorf("refused Prepare made extract-2: %v", err)
	}
	res, err := db.Leases().ListResources(ctx, "pull-2")
	requireNoErr(t, err)
	want := leases.Resource{Type: leases.ResourceSnapshotPrefix + native.Name, ID: "sha256:chain"}
	if !slices.Contains(res, want) {
		t.Errorf("lease holds %v, want %v among them", res, want)
	}
	// And in another namespace, the target is not there: unpack again.
	if _, err := sn.Prepare(nsCtx("other"), "extract-1", "", ref); err != nil {
		t.Errorf("Prepare in another namespace: %v", err)
	}
}

func TestSnapshotGC(t *testing.T) {
	_, local, db := newContentStore(t)
	backend, err := native.New(filepath.Join(t.TempDir(), "native"))
	requireNoErr(t, err)
	t.Cleanup(func() { backend.Close() })
	sn := db.Snapshotter(native.Name, backend)
	collector := NewGC(db, local, GCOptions{Snapshots: []SnapshotCollector{db.SnapshotCollector(native.Name, backend)}})
	ctx := nsCtx("ci")

	_, err = sn.Prepare(ctx, "e1", "")
	requireNoErr(t, err)
	requireNoErr(t, sn.Commit(ctx, "sha256:l1", "e1"))
	_, err = sn.Prepare(ctx, "e2", "sha256:l1")
	requireNoErr(t, err)
	requireNoErr(t, sn.Commit(ctx, "sha256:l2", "e2"))
	_, err = sn.Prepare(ctx, "rootfs", "sha256:l2")
	requireNoErr(t, err)
	_, err = sn.Prepare(ctx, "stray", "sha256:l1")
	requireNoErr(t, err)
	_, err = sn.Prepare(ctx, "removed", "")
	requireNoErr(t, err)
	requireNoErr(t, sn.Remove(ctx, "removed"))
	// The same keys in another namespace that nothing references.
	other := nsCtx("other")
	_, err = sn.Prepare(other, "e1", "")
	requireNoErr(t, err)
	requireNoErr(t, sn.Commit(other, "sha256:l1", "e1"))
	_, err = sn.View(other, "v", "sha256:l1")
	requireNoErr(t, err)
	if n := len(backendKeys(t, backend)); n != 7 {
		t.Fatalf("backend holds %d snapshots before GC, want 7", n)
	}

	c := testContainer(t, "web")
	c.Snapshotter, c.SnapshotKey = native.Name, "rootfs"
	_, err = db.Containers().Create(ctx, c)
	requireNoErr(t, err)

	stats, err := collector.Collect(context.Background())
	requireNoErr(t, err)
	var left []string
	requireNoErr(t, sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		left = append(left, info.Name)
		return nil
	}))
	if want := []string{"rootfs", "sha256:l1", "sha256:l2"}; !slices.Equal(left, want) {
		t.Errorf("ci keeps %q, want %q", left, want)
	}
	if _, err := sn.Stat(other, "sha256:l1"); !errdefs.IsNotFound(err) {
		t.Errorf("other's unreferenced layer survived: %v", err)
	}
	if stats.Snapshots != 3 {
		t.Errorf("stats.Snapshots = %d, want 3 (stray, other's layer and view)", stats.Snapshots)
	}
	if n := len(backendKeys(t, backend)); n != 3 {
		t.Errorf("backend holds %q after GC, want 3", backendKeys(t, backend))
	}
	// What is left still works.
	if _, err := sn.Mounts(ctx, "rootfs"); err != nil {
		t.Errorf("Mounts(rootfs) after GC: %v", err)
	}
}

// A daemon killed during a create leaves the snapshot underneath, while
// the transaction that took its key's number never reached the file: the
// next create is handed the same number. It must take the next free one,
// not fail with "already exists" (seen in the fault-injection run).
func TestSnapshotCreateAfterCrashLeftKeyUnderneath(t *testing.T) {
	_, sn, backend := newSnapshotEnv(t)
	ctx := nsCtx("ci")
	_, err := sn.Prepare(ctx, "a", "")
	requireNoErr(t, err)
	keys := backendKeys(t, backend)
	if len(keys) != 1 {
		t.Fatalf("backend keys %q, want one", keys)
	}
	n, err := strconv.ParseUint(strings.TrimPrefix(keys[0], "ci/"), 10, 64)
	requireNoErr(t, err)
	// What two cut creates left: the next two numbers, made underneath.
	for i := uint64(1); i <= 2; i++ {
		_, err := backend.Prepare(context.Background(), "ci/"+strconv.FormatUint(n+i, 10), "")
		requireNoErr(t, err)
	}
	if _, err := sn.Prepare(ctx, "b", ""); err != nil {
		t.Fatalf("prepare after a cut create: %v", err)
	}
	if _, err := sn.View(ctx, "v", ""); err != nil {
		t.Fatalf("view after a cut create: %v", err)
	}
	if got := len(backendKeys(t, backend)); got != 5 {
		t.Errorf("backend holds %d snapshots, want 5 (a, two left, b, v)", got)
	}
}
