package metadata

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/berthrt/berth/containers"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/leases"
	"github.com/berthrt/berth/snapshots"
	"github.com/berthrt/berth/storage/snapshots/native"
)

// snapshotterOf returns what the containers service passes: the one
// namespaced snapshotter sn under native's name, NotFound for any other
// name.
func snapshotterOf(sn snapshots.Snapshotter) func(string) (snapshots.Snapshotter, error) {
	return func(name string) (snapshots.Snapshotter, error) {
		if name != native.Name {
			return nil, fmt.Errorf("snapshotter %q: %w", name, errdefs.ErrNotFound)
		}
		return sn, nil
	}
}

// nativeContainer is a container id on the native snapshot key.
func nativeContainer(t *testing.T, id, key string) containers.Container {
	t.Helper()
	c := testContainer(t, id)
	c.Snapshotter, c.SnapshotKey = native.Name, key
	return c
}

// commitLayer commits an empty layer named name in the namespace of ctx,
// a GC root as an image's layer is.
func commitLayer(t *testing.T, ctx context.Context, sn snapshots.Snapshotter, name string) {
	t.Helper()
	_, err := sn.Prepare(ctx, name+"-active", "")
	requireNoErr(t, err)
	requireNoErr(t, sn.Commit(ctx, name, name+"-active", snapshots.WithLabels(map[string]string{"berth.io/gc.root": "x"})))
}

// One CreateWithSnapshot stores the container and makes its snapshot, an
// active one or a view, on a layer or on nothing, with its labels, without
// a lease; the mounts it returns are the snapshot's, and the stores agree.
func TestContainerCreateWithSnapshot(t *testing.T) {
	e := newContainerSnapshotEnv(t)
	ctx := nsCtx("ci")
	commitLayer(t, ctx, e.sn, "layer")
	for _, tt := range []struct {
		id     string
		snap   containers.NewSnapshot
		kind   snapshots.Kind
		writes bool
	}{
		{"web", containers.NewSnapshot{Parent: "layer", Labels: map[string]string{"role": "rootfs"}}, snapshots.KindActive, true},
		{"reader", containers.NewSnapshot{Parent: "layer", View: true}, snapshots.KindView, false},
		{"scratch", containers.NewSnapshot{}, snapshots.KindActive, true},
	} {
		t.Run(tt.id, func(t *testing.T) {
			want := nativeContainer(t, tt.id, tt.id+"-rootfs")
			stored, mounts, err := e.db.Containers().CreateWithSnapshot(ctx, want, tt.snap, snapshotterOf(e.sn))
			requireNoErr(t, err)
			got, err := e.db.Containers().Get(ctx, tt.id)
			requireNoErr(t, err)
			want.CreatedAt, want.UpdatedAt = stored.CreatedAt, stored.UpdatedAt
			requireSameContainer(t, got, want)
			requireSameContainer(t, stored, want)

			info, err := e.sn.Stat(ctx, want.SnapshotKey)
			requireNoErr(t, err)
			if info.Kind != tt.kind || info.Parent != tt.snap.Parent || fmt.Sprint(info.Labels) != fmt.Sprint(tt.snap.Labels) {
				t.Errorf("snapshot = %+v, want kind %v, parent %q, labels %v", info, tt.kind, tt.snap.Parent, tt.snap.Labels)
			}
			again, err := e.sn.Mounts(ctx, want.SnapshotKey)
			requireNoErr(t, err)
			if len(mounts) == 0 || fmt.Sprint(mounts) != fmt.Sprint(again) {
				t.Errorf("create returned the mounts %v, Mounts says %v", mounts, again)
			}
			if ro := slices.Contains(mounts[0].Options, "ro"); ro == tt.writes {
				t.Errorf("mounts %v: read-only %v, want %v", mounts, ro, !tt.writes)
			}
		})
	}
	ls, err := e.db.Leases().List(ctx)
	requireNoErr(t, err)
	if len(ls) != 0 {
		t.Errorf("a create with its snapshot made the leases %v", ls)
	}
	cs, err := e.db.CheckContainers(ctx)
	requireNoErr(t, err)
	ss, err := e.db.CheckSnapshots(ctx, native.Name, e.backend)
	requireNoErr(t, err)
	for _, p := range append(cs, ss...) {
		t.Error(p)
	}
	before := backendKeys(t, e.backend)
	_, err = e.gc.Collect(context.Background())
	requireNoErr(t, err)
	if after := backendKeys(t, e.backend); !slices.Equal(after, before) {
		t.Errorf("GC took snapshots of containers: %q before, %q after", before, after)
	}
}

// Under the caller's lease the new snapshot is the lease's too, as under
// Prepare: a caller that keeps a lease for its snapshots keeps this one.
func TestContainerCreateWithSnapshotLease(t *testing.T) {
	e := newContainerSnapshotEnv(t)
	ctx := nsCtx("ci")
	_, err := e.db.Leases().Create(ctx, leases.Lease{ID: "mine"})
	requireNoErr(t, err)
	_, _, err = e.db.Containers().CreateWithSnapshot(leases.WithLease(ctx, "mine"), nativeContainer(t, "web", "web-rootfs"), containers.NewSnapshot{}, snapshotterOf(e.sn))
	requireNoErr(t, err)
	rs, err := e.db.Leases().ListResources(ctx, "mine")
	requireNoErr(t, err)
	if want := []leases.Resource{{Type: leases.ResourceSnapshotPrefix + native.Name, ID: "web-rootfs"}}; !slices.Equal(rs, want) {
		t.Errorf("the lease holds %v, want %v", rs, want)
	}
}

// A failure at any step after the snapshot underneath was made (before
// its record, between its record and the container's) leaves the file
// byte for byte as it was and removes that snapshot again.
func TestContainerCreateWithSnapshotFailpoints(t *testing.T) {
	for _, step := range []string{failCreateRecord, failCreateContainerRecord} {
		t.Run(step, func(t *testing.T) {
			e := newContainerSnapshotEnv(t)
			ctx := nsCtx("ci")
			commitLayer(t, ctx, e.sn, "layer")
			keys := backendKeys(t, e.backend)
			injected := errors.New("injected")
			e.db.failpoint = func(s string) error {
				if s == step {
					return injected
				}
				return nil
			}
			refusedUnchanged(t, e.db, injected, func() error {
				_, _, err := e.db.Containers().CreateWithSnapshot(ctx, nativeContainer(t, "web", "web-rootfs"), containers.NewSnapshot{Parent: "layer"}, snapshotterOf(e.sn))
				return err
			})
			e.db.failpoint = nil
			if after := backendKeys(t, e.backend); !slices.Equal(after, keys) {
				t.Errorf("the snapshotter holds %q after the failed create, want %q", after, keys)
			}
			// Nothing is in the way of the same create again.
			_, _, err := e.db.Containers().CreateWithSnapshot(ctx, nativeContainer(t, "web", "web-rootfs"), containers.NewSnapshot{Parent: "layer"}, snapshotterOf(e.sn))
			requireNoErr(t, err)
		})
	}
}

// A create that is refused changes nothing: not the file, not the
// snapshotter, not the snapshot or container that holds a taken name.
func TestContainerCreateWithSnapshotRefused(t *testing.T) {
	e := newContainerSnapshotEnv(t)
	ctx := nsCtx("ci")
	commitLayer(t, ctx, e.sn, "layer")
	_, err := e.sn.Prepare(ctx, "taken", "layer", snapshots.WithLabels(map[string]string{"owner": "someone"}))
	requireNoErr(t, err)
	takenInfo, err := e.sn.Stat(ctx, "taken")
	requireNoErr(t, err)
	_, _, err = e.db.Containers().CreateWithSnapshot(ctx, nativeContainer(t, "existing", "existing-rootfs"), containers.NewSnapshot{Parent: "layer"}, snapshotterOf(e.sn))
	requireNoErr(t, err)
	keys := backendKeys(t, e.backend)

	other, err := native.New(filepath.Join(t.TempDir(), "other"))
	requireNoErr(t, err)
	t.Cleanup(func() { other.Close() })
	_, _, foreignDB := newContentStore(t)
	foreign := foreignDB.Snapshotter(native.Name, other)

	noSnapshot := nativeContainer(t, "bare", "")
	noSnapshot.Snapshotter = ""
	for _, tt := range []struct {
		name        string
		ctx         context.Context
		c           containers.Container
		snap        containers.NewSnapshot
		snapshotter func(string) (snapshots.Snapshotter, error)
		class       error
		says        []string
	}{
		{"parent missing", ctx, nativeContainer(t, "web", "web-rootfs"), containers.NewSnapshot{Parent: "sha256:absent"}, snapshotterOf(e.sn), errdefs.ErrNotFound, []string{`container "web"`, "parent", "sha256:absent"}},
		{"parent not committed", ctx, nativeContainer(t, "web", "web-rootfs"), containers.NewSnapshot{Parent: "taken"}, snapshotterOf(e.sn), errdefs.ErrInvalidArgument, []string{"parent", "not committed"}},
		{"key taken", ctx, nativeContainer(t, "web", "taken"), containers.NewSnapshot{Parent: "layer"}, snapshotterOf(e.sn), errdefs.ErrAlreadyExists, []string{`snapshot "taken"`}},
		{"id taken", ctx, nativeContainer(t, "existing", "other-rootfs"), containers.NewSnapshot{Parent: "layer"}, snapshotterOf(e.sn), errdefs.ErrAlreadyExists, []string{`container "existing"`}},
		{"unknown snapshotter", ctx, func() containers.Container {
			c := nativeContainer(t, "web", "web-rootfs")
			c.Snapshotter = "zfs"
			return c
		}(), containers.NewSnapshot{}, snapshotterOf(e.sn), errdefs.ErrNotFound, []string{`"zfs"`}},
		{"snapshotter of another file", ctx, nativeContainer(t, "web", "web-rootfs"), containers.NewSnapshot{}, snapshotterOf(foreign), errdefs.ErrNotImplemented, []string{"elsewhere"}},
		{"no snapshotters", ctx, nativeContainer(t, "web", "web-rootfs"), containers.NewSnapshot{}, nil, errdefs.ErrInvalidArgument, nil},
		{"no snapshot key", ctx, noSnapshot, containers.NewSnapshot{}, snapshotterOf(e.sn), errdefs.ErrInvalidArgument, []string{"snapshot key"}},
		{"bad label", ctx, nativeContainer(t, "web", "web-rootfs"), containers.NewSnapshot{Labels: map[string]string{"big": strings.Repeat("x", 5000)}}, snapshotterOf(e.sn), errdefs.ErrInvalidArgument, []string{"label"}},
		{"bad parent", ctx, nativeContainer(t, "web", "web-rootfs"), containers.NewSnapshot{Parent: "a\x00b"}, snapshotterOf(e.sn), errdefs.ErrInvalidArgument, []string{"parent"}},
		{"bad container", ctx, func() containers.Container { c := nativeContainer(t, "web", "web-rootfs"); c.Spec = nil; return c }(), containers.NewSnapshot{}, snapshotterOf(e.sn), errdefs.ErrInvalidArgument, []string{"spec"}},
		{"no namespace", context.Background(), nativeContainer(t, "web", "web-rootfs"), containers.NewSnapshot{}, snapshotterOf(e.sn), errdefs.ErrFailedPrecondition, []string{"namespace"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := refusedUnchanged(t, e.db, tt.class, func() error {
				_, _, err := e.db.Containers().CreateWithSnapshot(tt.ctx, tt.c, tt.snap, tt.snapshotter)
				return err
			})
			errorContains(t, err, tt.says...)
			if after := backendKeys(t, e.backend); !slices.Equal(after, keys) {
				t.Errorf("the snapshotter holds %q after a refused create, want %q", after, keys)
			}
		})
	}
	if info, err := e.sn.Stat(ctx, "taken"); err != nil || fmt.Sprint(info) != fmt.Sprint(takenInfo) {
		t.Errorf("the snapshot that held a taken key: %+v, %v; want %+v", info, err, takenInfo)
	}
	if _, err := e.db.Containers().Get(ctx, "web"); !errdefs.IsNotFound(err) {
		t.Errorf("container of refused creates: %v, want not found", err)
	}
}

// envCreateCrashChild makes the test binary a child of
// TestContainerCreateWithSnapshotCrash: "<step> <dir>".
const envCreateCrashChild = "BERTH_TEST_CREATE_CRASH_CHILD"

// A crash (SIGKILL) at either step of a create with its snapshot leaves
// neither record: only the snapshot underneath, which check reports as
// unrecorded and GC removes.
func TestContainerCreateWithSnapshotCrash(t *testing.T) {
	for _, step := range []string{failCreateRecord, failCreateContainerRecord} {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^TestContainerCreateWithSnapshotCrashChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), envCreateCrashChild+"="+step+" "+dir)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("child did not die of SIGKILL at %s: %v\n%s", step, err, out)
			}
			e := openFaultEnv(t, dir)
			ctx := nsCtx("ci")
			if _, err := e.db.Containers().Get(ctx, "web"); !errdefs.IsNotFound(err) {
				t.Errorf("container after a crash in its create: %v, want not found", err)
			}
			if _, err := e.sn.Stat(ctx, "web-rootfs"); !errdefs.IsNotFound(err) {
				t.Errorf("snapshot after a crash in its container's create: %v, want not found", err)
			}
			unrecorded := 0
			for _, p := range e.problems(t) {
				if p.What != ProblemSnapshotUnrecorded {
					t.Errorf("before GC: %v", p)
				}
				unrecorded++
			}
			if unrecorded != 1 {
				t.Errorf("check found %d unrecorded snapshots after the crash, want the one made", unrecorded)
			}
			_, err = e.gc.Collect(ctx)
			requireNoErr(t, err)
			for _, p := range e.problems(t) {
				t.Errorf("after GC: %v", p)
			}
			if keys := backendKeys(t, e.backend); len(keys) != 1 {
				t.Errorf("after GC the snapshotter holds %q, want only the layer", keys)
			}
		})
	}
}

// TestContainerCreateWithSnapshotCrashChild commits a layer, then creates
// a container with its snapshot and kills its own process at the step its
// parent names; without the parent it has nothing to do.
func TestContainerCreateWithSnapshotCrashChild(t *testing.T) {
	step, dir, ok := strings.Cut(os.Getenv(envCreateCrashChild), " ")
	if !ok {
		return
	}
	e := openFaultEnv(t, dir)
	ctx := nsCtx("ci")
	commitLayer(t, ctx, e.sn, "layer")
	e.db.failpoint = func(s string) error {
		if s == step {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		return nil
	}
	_, _, err := e.db.Containers().CreateWithSnapshot(ctx, nativeContainer(t, "web", "web-rootfs"), containers.NewSnapshot{Parent: "layer"}, snapshotterOf(e.sn))
	t.Fatalf("create ran past %s: %v", step, err)
}
