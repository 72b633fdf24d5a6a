package metadata

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/snapshots"
	"github.com/berthrt/berth/storage/snapshots/native"
)

// containerSnapshotEnv is a DB with a native snapshotter under it and GC
// over both, for a container's delete with its snapshot.
type containerSnapshotEnv struct {
	db      *DB
	sn      snapshots.Snapshotter // the namespaced view
	backend snapshots.Snapshotter
	gc      *GC
}

func newContainerSnapshotEnv(t *testing.T) containerSnapshotEnv {
	t.Helper()
	_, local, db := newContentStore(t)
	backend, err := native.New(filepath.Join(t.TempDir(), "native"))
	requireNoErr(t, err)
	t.Cleanup(func() { backend.Close() })
	gc := NewGC(db, local, GCOptions{Snapshots: []SnapshotCollector{db.SnapshotCollector(native.Name, backend)}})
	return containerSnapshotEnv{db: db, sn: db.Snapshotter(native.Name, backend), backend: backend, gc: gc}
}

// container creates the container id on the snapshot key of native.
func (e containerSnapshotEnv) container(t *testing.T, ctx context.Context, id, key string) {
	t.Helper()
	c := testContainer(t, id)
	c.Snapshotter, c.SnapshotKey = native.Name, key
	_, err := e.db.Containers().Create(ctx, c)
	requireNoErr(t, err)
}

// usableNative is what the containers service passes: only native is
// known.
func usableNative(name string) error {
	if name != native.Name {
		return fmt.Errorf("snapshotter %q: %w", name, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// drainDirtied empties the GC scheduler's channel and says whether a
// delete had marked the DB dirtied.
func drainDirtied(db *DB) bool {
	select {
	case <-db.deleted:
		return true
	default:
		return false
	}
}

// One DeleteWithSnapshot deletes the container's record and its
// snapshot's in one transaction: a failure between the two (the
// failpoint) leaves both, and then GC removes the snapshot underneath.
func TestContainerDeleteWithSnapshot(t *testing.T) {
	e := newContainerSnapshotEnv(t)
	ctx := nsCtx("ci")
	_, err := e.sn.Prepare(ctx, "layer-active", "")
	requireNoErr(t, err)
	requireNoErr(t, e.sn.Commit(ctx, "layer", "layer-active", snapshots.WithLabels(map[string]string{"berth.io/gc.root": "x"})))
	_, err = e.sn.Prepare(ctx, "web-rootfs", "layer")
	requireNoErr(t, err)
	rootfs, err := e.sn.(*snapshotStore).backendOf(ctx, "web-rootfs")
	requireNoErr(t, err)
	e.container(t, ctx, "web", "web-rootfs")

	injected := errors.New("injected")
	e.db.failpoint = func(step string) error {
		if step == failDeleteContainerRecord {
			return injected
		}
		return nil
	}
	drainDirtied(e.db)
	refusedUnchanged(t, e.db, injected, func() error {
		return e.db.Containers().DeleteWithSnapshot(ctx, "web", usableNative)
	})
	e.db.failpoint = nil
	if drainDirtied(e.db) {
		t.Error("a failed delete marked the DB dirtied")
	}

	requireNoErr(t, e.db.Containers().DeleteWithSnapshot(ctx, "web", usableNative))
	if _, err := e.db.Containers().Get(ctx, "web"); !errdefs.IsNotFound(err) {
		t.Errorf("container after its delete: %v, want not found", err)
	}
	if _, err := e.sn.Stat(ctx, "web-rootfs"); !errdefs.IsNotFound(err) {
		t.Errorf("snapshot after the container's delete: %v, want not found", err)
	}
	if info, err := e.sn.Stat(ctx, "layer"); err != nil || info.Kind != snapshots.KindCommitted {
		t.Errorf("its parent after the delete: %+v, %v", info, err)
	}
	if !drainDirtied(e.db) {
		t.Error("the delete did not tell GC that something was deleted")
	}
	if keys := backendKeys(t, e.backend); !slices.Contains(keys, rootfs) {
		t.Fatalf("the snapshot underneath went before GC: %q", keys)
	}
	_, err = e.gc.Collect(context.Background())
	requireNoErr(t, err)
	if keys := backendKeys(t, e.backend); slices.Contains(keys, rootfs) || len(keys) != 1 {
		t.Errorf("after GC the snapshotter holds %q, want only the layer (not %q)", keys, rootfs)
	}
}

// A snapshot that cannot go fails the whole delete, which changes nothing:
// the parent of another snapshot, a snapshotter the caller does not know.
func TestContainerDeleteWithSnapshotRefused(t *testing.T) {
	e := newContainerSnapshotEnv(t)
	ctx := nsCtx("ci")
	_, err := e.sn.Prepare(ctx, "layer-active", "")
	requireNoErr(t, err)
	requireNoErr(t, e.sn.Commit(ctx, "layer", "layer-active"))
	_, err = e.sn.Prepare(ctx, "child", "layer")
	requireNoErr(t, err)
	e.container(t, ctx, "on-layer", "layer")
	e.container(t, ctx, "on-child", "child")
	drainDirtied(e.db)

	err = refusedUnchanged(t, e.db, errdefs.ErrFailedPrecondition, func() error {
		return e.db.Containers().DeleteWithSnapshot(ctx, "on-layer", usableNative)
	})
	errorContains(t, err, "on-layer", "is the parent of")
	refusedUnchanged(t, e.db, errdefs.ErrFailedPrecondition, func() error {
		return e.db.Containers().DeleteWithSnapshot(ctx, "on-child", func(string) error {
			return fmt.Errorf("no such snapshotter: %w", errdefs.ErrFailedPrecondition)
		})
	})
	refusedUnchanged(t, e.db, errdefs.ErrNotFound, func() error {
		return e.db.Containers().DeleteWithSnapshot(ctx, "absent", usableNative)
	})
	refusedUnchanged(t, e.db, errdefs.ErrNotFound, func() error {
		return e.db.Containers().DeleteWithSnapshot(nsCtx("other"), "on-child", usableNative)
	})
	refusedUnchanged(t, e.db, errdefs.ErrInvalidArgument, func() error {
		return e.db.Containers().DeleteWithSnapshot(ctx, "on-child", nil)
	})
	if drainDirtied(e.db) {
		t.Error("a refused delete marked the DB dirtied")
	}
}

// A container whose snapshot is gone already, or that names none, is
// deleted all the same: there is nothing to remove.
func TestContainerDeleteWithSnapshotNothingToRemove(t *testing.T) {
	e := newContainerSnapshotEnv(t)
	ctx := nsCtx("ci")
	e.container(t, ctx, "gone", "never-made")
	bare := testContainer(t, "bare")
	bare.Snapshotter, bare.SnapshotKey = "", ""
	_, err := e.db.Containers().Create(ctx, bare)
	requireNoErr(t, err)
	for _, id := range []string{"gone", "bare"} {
		if err := e.db.Containers().DeleteWithSnapshot(ctx, id, usableNative); err != nil {
			t.Errorf("delete %s: %v", id, err)
		}
		if _, err := e.db.Containers().Get(ctx, id); !errdefs.IsNotFound(err) {
			t.Errorf("container %s after its delete: %v, want not found", id, err)
		}
	}
}
