package integration

import (
	"bytes"
	"context"
	"testing"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/images/archive"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/oci"
)

// TestContainerDeleteWithSnapshotAtomic: WithSnapshotCleanup deletes the
// container's record and its snapshot's in one transaction of the daemon
// (remove_snapshot), so no failure or crash between two calls can leave
// one without the other: a snapshot that cannot be removed (a layer with
// children here) fails the delete, and both stay. A snapshot that is gone
// already does not keep the container.
func TestContainerDeleteWithSnapshotAtomic(t *testing.T) {
	testutil.RequireRoot(t, "runc", "busybox")
	arch, _ := layeredArchive(t)
	d := newDaemon(t)
	ctx := d.nsContext("order")
	c := d.client(t, "order")
	imgs, err := c.Import(ctx, bytes.NewReader(arch), archive.WithUnpack("overlayfs"))
	if err != nil {
		t.Fatal(err)
	}
	sn := c.SnapshotService("overlayfs")
	chainID, err := imgs[0].ChainID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// "layer": a committed snapshot with a child, which Remove refuses.
	const layer = "layer"
	if _, err := sn.Prepare(ctx, "layer-active", chainID); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, layer, "layer-active"); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Prepare(ctx, "child", layer); err != nil {
		t.Fatal(err)
	}
	useLayer := func(_ context.Context, _ *client.Client, info *client.ContainerInfo) error {
		info.Snapshotter, info.SnapshotKey = "overlayfs", layer
		return nil
	}
	ctr, err := c.NewContainer(ctx, "o1", useLayer, client.WithNewSpec(oci.WithImageConfig(imgs[0])))
	if err != nil {
		t.Fatal(err)
	}
	if err := ctr.Delete(ctx, client.WithSnapshotCleanup); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("delete with a snapshot that cannot go: %v, want failed precondition", err)
	}
	if _, err := c.LoadContainer(ctx, "o1"); err != nil {
		t.Errorf("container after a refused delete: %v, want it kept", err)
	}
	if _, err := sn.Stat(ctx, layer); err != nil {
		t.Errorf("layer after the refused delete: %v", err)
	}

	// Its snapshot removed by hand first: nothing to remove, the record
	// goes.
	if _, err := c.NewContainer(ctx, "o2", client.WithSnapshotter("overlayfs"), client.WithNewSnapshot("o2", imgs[0]),
		client.WithNewSpec(oci.WithImageConfig(imgs[0]))); err != nil {
		t.Fatal(err)
	}
	if err := sn.Remove(ctx, "o2"); err != nil {
		t.Fatal(err)
	}
	ctr2, err := c.LoadContainer(ctx, "o2")
	if err != nil {
		t.Fatal(err)
	}
	if err := ctr2.Delete(ctx, client.WithSnapshotCleanup); err != nil {
		t.Fatalf("delete of a container whose snapshot is gone: %v", err)
	}
	if _, err := c.LoadContainer(ctx, "o2"); !errdefs.IsNotFound(err) {
		t.Errorf("container o2 after its delete: %v, want not found", err)
	}
}
