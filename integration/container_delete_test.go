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

// TestContainerDeleteRecordBeforeSnapshot: WithSnapshotCleanup deletes the
// container's record before its snapshot, so that a failure (or a crash)
// between the two leaves a snapshot nothing references, which GC removes,
// and never a container without its root filesystem (the fault-injection
// run found such containers). The snapshot here cannot be removed (it is a
// layer with children), standing in for the crash.
func TestContainerDeleteRecordBeforeSnapshot(t *testing.T) {
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
	if _, err := c.LoadContainer(ctx, "o1"); !errdefs.IsNotFound(err) {
		t.Errorf("container after its delete: %v, want not found (the record goes first)", err)
	}
	if _, err := sn.Stat(ctx, layer); err != nil {
		t.Errorf("layer after the refused removal: %v", err)
	}
}
