package integration

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/images/archive"
	"github.com/berthrt/berth/mount"
	"github.com/berthrt/berth/snapshots"
)

// TestCtlImagesMount mounts an image unpacked in each built-in
// snapshotter with berthctl images mount: a read-only view shows the
// files its layers leave and refuses writes; a --rw mount takes writes,
// and keeps its snapshot and lease after an unmount without --rm (a
// second mount on the same folder is refused until unmount --rm);
// unmount --rm leaves nothing mounted, no snapshot beyond the image's
// layers and no lease. Bad input fails with a clear error and leaves
// nothing behind.
func TestCtlImagesMount(t *testing.T) {
	arch, _ := layeredArchive(t)
	d := newDaemon(t)
	c := newCtl(t, d)
	for _, sn := range []string{"overlayfs", "native"} {
		t.Run(sn, func(t *testing.T) {
			ns := "mount-" + sn
			ctx := d.nsContext(ns)
			cl := d.client(t, ns)
			if _, err := cl.Import(ctx, bytes.NewReader(arch), archive.WithUnpack(sn)); err != nil {
				t.Fatal(err)
			}
			sns := cl.SnapshotService(sn)
			layers := len(walkSnapshots(t, ctx, sns))
			target := filepath.Join(t.TempDir(), "mnt")
			if err := os.Mkdir(target, 0o755); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := mount.UnmountAll(target, 0); err != nil {
					t.Errorf("cleanup: %v", err)
				}
			})
			run := func(args ...string) string {
				t.Helper()
				return c.ok(append([]string{"-n", ns, "images"}, args...)...)
			}
			// leftover checks that nothing of a mount is left: no mount,
			// no snapshot but the image's layers, no lease, no folder
			// on disk but the layers'.
			leftover := func(when string) {
				t.Helper()
				if m := mountsUnder(target); len(m) != 0 {
					t.Errorf("%s: mounted: %v", when, m)
				}
				if _, err := sns.Stat(ctx, target); !errdefs.IsNotFound(err) {
					t.Errorf("%s: snapshot %s: %v, want not found", when, target, err)
				}
				if got := walkSnapshots(t, ctx, sns); len(got) != layers {
					t.Errorf("%s: snapshots %v, want the image's %d", when, got, layers)
				}
				if ls, err := cl.LeasesService().List(ctx); err != nil || len(ls) != 0 {
					t.Errorf("%s: leases %v, %v", when, ls, err)
				}
				if dirs := snapshotFolders(t, filepath.Join(d.root, "lib"), sn); len(dirs) != layers {
					t.Errorf("%s: folders %v in the %s root, want the image's %d", when, dirs, sn, layers)
				}
			}

			// Read-only: the files the layers leave, no writes.
			if out := run("mount", "--snapshotter", sn, layeredImageRef, target); out != target+"\n" {
				t.Errorf("mount printed %q, want %q", out, target+"\n")
			}
			for name, want := range map[string]string{"data/b": "b", "data/c": "c", "data/d": "d", "opq/new": "n"} {
				if got, err := os.ReadFile(filepath.Join(target, name)); err != nil || string(got) != want {
					t.Errorf("%s in the mount: %q, %v, want %q", name, got, err, want)
				}
			}
			if _, err := os.Stat(filepath.Join(target, "data/a")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("data/a, whited out by the second layer: %v", err)
			}
			if err := os.WriteFile(filepath.Join(target, "data/x"), []byte("x"), 0o644); !errors.Is(err, syscall.EROFS) {
				t.Errorf("write to a read-only mount: %v, want EROFS", err)
			}
			if info, err := sns.Stat(ctx, target); err != nil || info.Kind != snapshots.KindView {
				t.Errorf("the mount's snapshot: %+v, %v, want a view", info, err)
			}
			if ls, err := cl.LeasesService().List(ctx); err != nil || len(ls) != 1 || ls[0].Labels["berth.io/mount.target"] != target {
				t.Errorf("leases while mounted: %+v, %v, want one naming %s", ls, err, target)
			}
			run("unmount", "--rm", target)
			leftover("after unmount --rm")

			// --rw: writes go to the snapshot, which outlives a plain
			// unmount.
			run("mount", "--rw", "--snapshotter", sn, layeredImageRef, target)
			if err := os.WriteFile(filepath.Join(target, "data/x"), []byte("x"), 0o644); err != nil {
				t.Errorf("write to a --rw mount: %v", err)
			}
			run("unmount", target)
			if m := mountsUnder(target); len(m) != 0 {
				t.Errorf("mounted after unmount: %v", m)
			}
			if info, err := sns.Stat(ctx, target); err != nil || info.Kind != snapshots.KindActive {
				t.Errorf("snapshot after unmount without --rm: %+v, %v, want active", info, err)
			}
			c.fails(1, []string{"earlier images mount", "unmount --rm"}, "-n", ns, "images", "mount", "--snapshotter", sn, layeredImageRef, target)
			run("unmount", "--rm", target)
			leftover("after the --rw mount's unmount --rm")

			// Bad input: clear errors, nothing left.
			c.fails(1, []string{"no/such:image", "not found"}, "-n", ns, "images", "mount", "--snapshotter", sn, "no/such:image", target)
			c.fails(1, []string{"does not exist"}, "-n", ns, "images", "mount", "--snapshotter", sn, layeredImageRef, target+"-missing")
			c.fails(2, []string{"platform"}, "-n", ns, "images", "mount", "--platform", "not a platform", layeredImageRef, target)
			c.fails(1, []string{"no images mount at " + target}, "-n", ns, "images", "unmount", "--rm", target)
			other := map[string]string{"overlayfs": "native", "native": "overlayfs"}[sn]
			c.fails(1, []string{"not unpacked in " + other, "images pull --snapshotter " + other},
				"-n", ns, "images", "mount", "--snapshotter", other, layeredImageRef, target)
			leftover("after the refused calls")
		})
	}
}
