package integration

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/images/archive"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/io/cio"
	"github.com/berthrt/berth/oci"
)

// TestTaskDeleteRemovesUnattachedFIFOs: a task created by one client,
// which then goes away without deleting it (as a crashed client), and
// deleted by another that loaded it without attaching: its FIFOs and their
// folder go (found by the fault-injection run, on the chaos branch: they stayed
// forever).
func TestTaskDeleteRemovesUnattachedFIFOs(t *testing.T) {
	testutil.RequireRoot(t, "runc", "busybox")
	arch, _ := layeredArchive(t)
	d := newDaemon(t)
	ctx := d.nsContext("fifos")
	c := d.client(t, "fifos")
	imgs, err := c.Import(ctx, bytes.NewReader(arch), archive.WithUnpack("overlayfs"))
	if err != nil {
		t.Fatal(err)
	}
	ctr, err := c.NewContainer(ctx, "f1", client.WithImage(imgs[0]), client.WithSnapshotter("overlayfs"),
		client.WithNewSnapshot("f1", imgs[0]), client.WithNewSpec(oci.WithImageConfig(imgs[0]), oci.WithProcessArgs("sleep", "600")))
	if err != nil {
		t.Fatal(err)
	}
	var out testutil.Buffer
	task, err := ctr.NewTask(ctx, d.creator(nil, &out, &out))
	if err != nil {
		t.Fatal(err)
	}
	fifoDir := filepath.Join(d.state, filepath.Base(cio.DefaultFIFODir))
	if entries, _ := os.ReadDir(fifoDir); len(entries) != 1 {
		t.Fatalf("FIFO folders: %v, want one", entries)
	}
	_ = task // the first client never deletes it

	other := d.client(t, "fifos")
	ctr2, err := other.LoadContainer(ctx, "f1")
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := ctr2.Task(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loaded.Delete(ctx, client.WithProcessKill); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(fifoDir); len(entries) != 0 {
		t.Errorf("FIFO folders after the delete: %v, want none", entries)
	}
	if err := ctr2.Delete(ctx, client.WithSnapshotCleanup); err != nil {
		t.Fatal(err)
	}
}
