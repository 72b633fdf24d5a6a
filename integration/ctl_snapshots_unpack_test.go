package integration

import (
	"strings"
	"testing"

	"github.com/berthrt/berth/snapshots"
)

// TestCtlSnapshotsUnpack imports busybox without unpacking it, unpacks it
// into native with berthctl, and runs a container on it; the snapshots
// outlive a GC (the image holds them), a second unpack finds them, and
// nothing of the unpack's lease is left.
func TestCtlSnapshotsUnpack(t *testing.T) {
	d := newDaemon(t)
	const ns = "ctl-unpack"
	ctx := d.nsContext(ns)
	c := d.client(t, ns)
	imported, err := c.Import(ctx, busyboxArchive(t)) // no archive.WithUnpack: nothing is unpacked
	if err != nil {
		t.Fatal(err)
	}
	want, err := imported[0].ChainID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sn := c.SnapshotService("native")
	if _, err := sn.Stat(ctx, want); err == nil {
		t.Fatal("the import unpacked already")
	}

	ctl := newCtl(t, d)
	if got := strings.TrimSpace(ctl.ok("-n", ns, "snapshots", "--snapshotter", "native", "unpack", "busybox")); got != want {
		t.Fatalf("snapshots unpack printed %q, want the chain ID %s", got, want)
	}
	if _, err := c.GarbageCollect(ctx); err != nil {
		t.Fatal(err)
	}
	info, err := sn.Stat(ctx, want)
	if err != nil || info.Kind != snapshots.KindCommitted {
		t.Fatalf("the top snapshot after a GC: %+v, %v", info, err)
	}
	leases, err := c.LeasesService().List(ctx)
	if err != nil || len(leases) != 0 {
		t.Fatalf("leases after unpack: %v, %v", leases, err)
	}
	if out := ctl.ok("-n", ns, "run", "--rm", "--snapshotter", "native", "busybox", "on-native", "echo", "unpacked"); out != "unpacked\n" {
		t.Errorf("run on the unpacked image printed %q", out)
	}
	// Again: everything is there already.
	if got := strings.TrimSpace(ctl.ok("-n", ns, "snapshots", "--snapshotter", "native", "unpack", commitBase)); got != want {
		t.Errorf("second unpack printed %q", got)
	}

	ctl.fails(1, []string{"nosuch", "not found"}, "-n", ns, "snapshots", "unpack", "nosuch:1")
	ctl.fails(1, []string{"nosuchsnapshotter"}, "-n", ns, "snapshots", "--snapshotter", "nosuchsnapshotter", "unpack", "busybox")
	ctl.fails(2, []string{"not/a/platform/at/all"}, "-n", ns, "snapshots", "unpack", "--platform", "not/a/platform/at/all", "busybox")
}
