package integration

import (
	"bytes"
	"context"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/images/archive"
	"github.com/berthrt/berth/internal/testutil"
	introspectionv1 "github.com/berthrt/berth/proto/introspection/v1"
	"github.com/berthrt/berth/snapshots"
)

// TestBtrfsSnapshotter runs berthd with its root on a loop-mounted btrfs:
// the btrfs snapshotter is available, an import unpacks the layered image
// into read-only subvolumes, a container writes into its own writable
// snapshot, and once the container is deleted a collection leaves the
// image's layers and nothing else, in berth's records and on btrfs.
func TestBtrfsSnapshotter(t *testing.T) {
	testutil.RequireRoot(t, "runc", "busybox", "btrfs")
	mnt := testutil.LoopBtrfs(t) // before the daemon: its cleanup runs after the daemon's
	d := newDaemon(t, withDataRoot(mnt+"/lib"))
	const ns, sn = "btrfs", "btrfs"
	ctx := d.nsContext(ns)
	c := d.client(t, ns)

	resp, err := d.api().introspection.Services(context.Background(), &introspectionv1.ServicesRequest{
		Filters: []string{`type=="berth.snapshotter.v1",id=="btrfs"`},
	})
	if err != nil || len(resp.GetServices()) != 1 || resp.GetServices()[0].GetStatus() != "ok" {
		t.Fatalf("introspection of btrfs: %v, %v", resp.GetServices(), err)
	}

	arch, want := layeredArchive(t)
	imgs, err := c.Import(ctx, bytes.NewReader(arch), archive.WithUnpack(sn))
	if err != nil {
		t.Fatal(err)
	}
	img := imgs[0]
	chainID, err := img.ChainID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	layers := snapshotNames(t, ctx, c, sn)
	if len(layers) != 3 || !slices.Contains(layers, chainID) {
		t.Fatalf("snapshots after the import: %q, want the image's 3 layers up to %s", layers, chainID)
	}
	subvolumes := func() []string {
		t.Helper()
		out, err := exec.Command("btrfs", "subvolume", "list", "-o", mnt).CombinedOutput()
		if err != nil {
			t.Fatalf("btrfs subvolume list: %v: %s", err, out)
		}
		return strings.Split(strings.TrimSpace(string(out)), "\n")
	}
	readOnly := func() []string {
		t.Helper()
		out, err := exec.Command("btrfs", "subvolume", "list", "-r", "-o", mnt).CombinedOutput()
		if err != nil {
			t.Fatalf("btrfs subvolume list -r: %v: %s", err, out)
		}
		return strings.Split(strings.TrimSpace(string(out)), "\n")
	}
	if got, ro := subvolumes(), readOnly(); len(got) != 3 || len(ro) != 3 {
		t.Errorf("after the import: subvolumes\n%s\nread-only\n%s\nwant the 3 layers, read-only", strings.Join(got, "\n"), strings.Join(ro, "\n"))
	}

	// The container sees what the layers leave (whiteouts applied into
	// the subvolumes), writes, and keeps its writes to itself.
	out, code := runFromImage(t, ctx, d, c, "writer", img, sn, false,
		"sh", "-c", "find /data /keep /opq | sort; echo written > /data/new && cat /data/new")
	if code != 0 || out != want+"written\n" {
		t.Errorf("container: exit %d, output:\n%s\nwant:\n%swritten", code, out, want)
	}
	if got := subvolumes(); len(got) != 4 {
		t.Errorf("with the container: subvolumes\n%s\nwant the 3 layers and its snapshot", strings.Join(got, "\n"))
	}
	ctr, err := c.LoadContainer(ctx, "writer")
	if err != nil {
		t.Fatal(err)
	}
	if err := ctr.Delete(ctx, client.WithSnapshotCleanup); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GarbageCollect(ctx); err != nil {
		t.Fatal(err)
	}
	if got := snapshotNames(t, ctx, c, sn); !slices.Equal(got, layers) {
		t.Errorf("snapshots after deleting the container and collecting: %q, want the image's %q", got, layers)
	}
	if got, ro := subvolumes(), readOnly(); len(got) != 3 || len(ro) != 3 {
		t.Errorf("after the collection: subvolumes\n%s\nread-only\n%s\nwant the 3 layers, read-only", strings.Join(got, "\n"), strings.Join(ro, "\n"))
	}
}

func snapshotNames(t *testing.T, ctx context.Context, c *client.Client, sn string) []string {
	t.Helper()
	var names []string
	if err := c.SnapshotService(sn).Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		names = append(names, info.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}
