package btrfs

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/mount"
	"github.com/berthrt/berth/namespaces"
	"github.com/berthrt/berth/snapshots"
	"github.com/berthrt/berth/storage/snapshots/snapshotstest"
)

func TestBtrfsSuite(t *testing.T) {
	mnt := testutil.LoopBtrfs(t)
	snapshotstest.RunIn(t, Name, mnt, func(root string) (snapshots.Snapshotter, error) { return New(root) })
}

// TestIoctlLayout checks the argument structs against the sizes in the
// kernel's <linux/btrfs.h>; the ioctl numbers encode them.
func TestIoctlLayout(t *testing.T) {
	for _, tc := range []struct {
		name      string
		got, want uintptr
	}{
		{"btrfs_ioctl_vol_args", unsafe.Sizeof(volArgs{}), 4096},
		{"btrfs_ioctl_vol_args_v2", unsafe.Sizeof(volArgsV2{}), 4096},
		{"btrfs_ioctl_ino_lookup_args", unsafe.Sizeof(inoLookupArgs{}), 4096},
		{"btrfs_ioctl_search_key", unsafe.Sizeof(searchKey{}), 104},
		{"btrfs_ioctl_search_args", unsafe.Sizeof(searchArgs{}), 4096},
		// The numbers as <linux/btrfs.h> defines them, computed by hand.
		{"BTRFS_IOC_SNAP_CREATE_V2", iocSnapCreateV2, 0x50009417},
		{"BTRFS_IOC_SUBVOL_CREATE", iocSubvolCreate, 0x5000940e},
		{"BTRFS_IOC_SNAP_DESTROY", iocSnapDestroy, 0x5000940f},
		{"BTRFS_IOC_TREE_SEARCH", iocTreeSearch, 0xd0009411},
		{"BTRFS_IOC_INO_LOOKUP", iocInoLookup, 0xd0009412},
		{"BTRFS_IOC_SUBVOL_GETFLAGS", iocSubvolGetFlags, 0x80089419},
		{"BTRFS_IOC_SUBVOL_SETFLAGS", iocSubvolSetFlags, 0x4008941a},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %#x, want %#x", tc.name, tc.got, tc.want)
		}
	}
}

// TestNotOnBtrfs: elsewhere New refuses, says why, and writes nothing.
func TestNotOnBtrfs(t *testing.T) {
	root := t.TempDir() // tmpfs or the root filesystem, never btrfs here
	if Supported(root) == nil {
		testutil.Require(t, false, root+" is on btrfs: cannot test the refusal")
	}
	_, err := New(root)
	if !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), "not on a btrfs filesystem") {
		t.Fatalf("New on %s: %v, want not implemented, saying why", root, err)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("New left %d files in %s", len(entries), root)
	}
}

// TestSubvolumes checks what the suite cannot see: layers are read-only
// subvolumes, containers writable snapshots of them, and Remove deletes
// read-only subvolumes.
func TestSubvolumes(t *testing.T) {
	mnt, root, sn, ctx := openInLoop(t)
	if _, err := sn.Prepare(ctx, "extract", ""); err != nil {
		t.Fatal(err)
	}
	layerDir := onlySnapshotDir(t, root)
	if err := os.WriteFile(filepath.Join(fsDir(layerDir), "file"), []byte("layer"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, "layer", "extract"); err != nil {
		t.Fatal(err)
	}
	if sub, err := isSubvolume(fsDir(layerDir)); err != nil || !sub {
		t.Fatalf("committed layer %s: subvolume %v, %v", fsDir(layerDir), sub, err)
	}
	if err := os.WriteFile(filepath.Join(fsDir(layerDir), "new"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write into a committed layer: %v, want EROFS", err)
	}
	mounts, err := sn.Prepare(ctx, "container", "layer")
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) != 1 || mounts[0].Type != "bind" {
		t.Fatalf("mounts of an active snapshot: %+v", mounts)
	}
	if sub, err := isSubvolume(mounts[0].Source); err != nil || !sub {
		t.Errorf("active snapshot %s: subvolume %v, %v", mounts[0].Source, sub, err)
	}
	if b, err := os.ReadFile(filepath.Join(mounts[0].Source, "file")); err != nil || string(b) != "layer" {
		t.Errorf("the snapshot of the layer reads %q, %v", b, err)
	}
	removeAllAndCheck(t, ctx, sn, mnt, root, "container", "layer")
}

// TestUsageFromQgroups: with quotas on, a snapshot's usage is the bytes it
// holds alone, not those it shares with its parent (which a walk would
// count).
func TestUsageFromQgroups(t *testing.T) {
	mnt := testutil.LoopBtrfs(t)
	testutil.RequireRoot(t, "btrfs")
	if out, err := exec.Command("btrfs", "quota", "enable", mnt).CombinedOutput(); err != nil {
		t.Fatalf("btrfs quota enable: %v: %s", err, out)
	}
	if out, err := exec.Command("btrfs", "quota", "rescan", "-w", mnt).CombinedOutput(); err != nil {
		t.Fatalf("btrfs quota rescan: %v: %s", err, out)
	}
	sn, err := New(mnt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sn.Close() })
	ctx := namespaces.WithNamespace(t.Context(), "test")
	const big, small = 8 << 20, 64 << 10
	mounts, err := sn.Prepare(ctx, "extract", "")
	if err != nil {
		t.Fatal(err)
	}
	writeMounted(t, mounts, "big", big)
	if err := sn.Commit(ctx, "layer", "extract"); err != nil {
		t.Fatal(err)
	}
	if u, err := sn.Usage(ctx, "layer"); err != nil || u.Size < big {
		t.Errorf("Usage(layer) = %+v, %v; want at least %d bytes", u, err, big)
	}
	mounts, err = sn.Prepare(ctx, "container", "layer")
	if err != nil {
		t.Fatal(err)
	}
	writeMounted(t, mounts, "small", small)
	u, err := sn.Usage(ctx, "container")
	if err != nil {
		t.Fatal(err)
	}
	if u.Size < small || u.Size >= big {
		t.Errorf("Usage(container) = %+v: want its own %d bytes and metadata, not its parent's %d", u, small, big)
	}
	if u.Inodes < 3 {
		t.Errorf("Usage(container).Inodes = %d, want the root, big and small", u.Inodes)
	}
}

func writeMounted(t *testing.T, mounts []mount.Mount, name string, size int) {
	t.Helper()
	dir := t.TempDir()
	if err := mount.All(mounts, dir); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := mount.UnmountAll(dir, 0); err != nil {
			t.Error(err)
		}
	}()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(strings.Repeat("u", size)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func onlySnapshotDir(t *testing.T, root string) string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, "snapshots"))
	if err != nil || len(entries) != 1 {
		t.Fatalf("snapshots folder: %v, %v; want one", entries, err)
	}
	return filepath.Join(root, "snapshots", entries[0].Name())
}

// openInLoop opens the snapshotter in the folder root of a new loop btrfs
// mounted on mnt, and returns them with a namespaced context.
func openInLoop(t *testing.T) (mnt, root string, sn snapshots.Snapshotter, ctx context.Context) {
	t.Helper()
	mnt = testutil.LoopBtrfs(t)
	root = filepath.Join(mnt, "snapshots")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	sn, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sn.Close() })
	return mnt, root, sn, namespaces.WithNamespace(t.Context(), "test")
}

// removeAllAndCheck removes keys from sn and checks that no snapshot
// folder and no subvolume on mnt is left.
func removeAllAndCheck(t *testing.T, ctx context.Context, sn snapshots.Snapshotter, mnt, root string, keys ...string) {
	t.Helper()
	for _, key := range keys {
		if err := sn.Remove(ctx, key); err != nil {
			t.Fatalf("Remove(%s): %v", key, err)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(root, "snapshots")); len(entries) != 0 {
		t.Errorf("left after Remove: %v", entries)
	}
	out, err := exec.Command("btrfs", "subvolume", "list", mnt).CombinedOutput()
	if err != nil {
		t.Fatalf("btrfs subvolume list: %v: %s", err, out)
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Errorf("subvolumes left after Remove:\n%s", s)
	}
}
