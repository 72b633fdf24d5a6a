package integration

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/images/archive"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/io/cio"
	"github.com/berthrt/berth/oci"
)

// A container's snapshot goes with it (WithSnapshotCleanup) only once it
// has no task: with one, the daemon refuses to delete the record, and the
// snapshot stays. A snapshot on an image that is not unpacked into the
// snapshotter fails with NotFound and says so.
func TestSnapshotCleanupAndMissingParent(t *testing.T) {
	testutil.RequireRoot(t, "runc", "busybox")
	arch, _ := layeredArchive(t)
	d := newDaemon(t)
	ctx := d.nsContext("snapclean")
	c := d.client(t, "snapclean")
	imgs, err := c.Import(ctx, bytes.NewReader(arch), archive.WithUnpack("overlayfs"))
	if err != nil {
		t.Fatal(err)
	}
	img := imgs[0]

	ctr, err := c.NewContainer(ctx, "withtask", client.WithImage(img), client.WithSnapshotter("overlayfs"),
		client.WithNewSnapshot("withtask", img), client.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs("true")))
	if err != nil {
		t.Fatal(err)
	}
	task, err := ctr.NewTask(ctx, cio.NullIO)
	if err != nil {
		t.Fatal(err)
	}
	sn := c.SnapshotService("overlayfs")
	if err := ctr.Delete(ctx, client.WithSnapshotCleanup); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("delete with snapshot cleanup of a container with a task: %v, want ErrFailedPrecondition", err)
	}
	if _, err := sn.Stat(ctx, "withtask"); err != nil {
		t.Fatalf("the snapshot after a refused delete: %v", err)
	}
	if _, err := c.LoadContainer(ctx, "withtask"); err != nil {
		t.Fatalf("the container after a refused delete: %v", err)
	}
	if _, err := task.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ctr.Delete(ctx, client.WithSnapshotCleanup); err != nil {
		t.Fatalf("delete with snapshot cleanup: %v", err)
	}
	if _, err := sn.Stat(ctx, "withtask"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("the snapshot after the delete: %v, want ErrNotFound", err)
	}
	if _, err := c.LoadContainer(ctx, "withtask"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("the container after the delete: %v, want ErrNotFound", err)
	}

	// The image is unpacked into overlayfs only.
	_, err = c.NewContainer(ctx, "nolayers", client.WithImage(img), client.WithSnapshotter("native"),
		client.WithNewSnapshot("nolayers", img), client.WithNewSpec(oci.WithImageConfig(img)))
	if !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "is not unpacked into native") {
		t.Fatalf("a snapshot on an image not unpacked into the snapshotter: %v", err)
	}
	if _, err := c.LoadContainer(ctx, "nolayers"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("a container whose snapshot failed: %v", err)
	}
}
