package integration

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/oci"
	"github.com/berthrt/berth/unpack"
)

// swapRounds is how many commits, and as many diffs, each snapshotter's
// container gets while it swaps. With Compare walking by path, the
// native snapshotter's first round already leaked here (see the commit
// that added this test).
const swapRounds = 40

// swapNames are the names of the files of the swapped folder, and of the
// host folder it is swapped with.
func swapNames() []string {
	names := []string{"marker"}
	for i := range 100 {
		names = append(names, fmt.Sprintf("f%03d", i))
	}
	return names
}

// swapScript makes /d with a file of each of names, then runs the
// swapper (bind-mounted at /swapper), which swaps /d with a symlink to
// the host folder host and back until SIGTERM.
func swapScript(names []string, host string) string {
	return fmt.Sprintf("cd / && mkdir d && for f in %s; do echo container > d/$f; done && exec /swapper '%s'", strings.Join(names, " "), host)
}

// TestCommitSwapRace is the swap race of issue 11 through a real daemon:
// a container swaps a folder of its root filesystem for a symlink to a
// host folder (a path that means nothing inside the container, but that
// a walk by path on the host follows) and back in a tight loop, while
// the running container is committed (client Commit, no pause, as
// berthctl commit) and its snapshot diffed against its parent (the diff
// service's Compare, as berthctl snapshots diff) over and over. The
// swapped folder holds files named like the host folder's (a marker and
// 100 more), so a walk that listed the folder and then read by path
// through the symlink would read the host's bytes rather than fail on a
// name the host lacks. No layer may ever hold them. The native
// snapshotter's folder is read in place, live. Overlayfs is read through
// a temporary read-only overlay over the live upper folder, whose cached
// entries hid the swap from a walk by path too; its round guards a
// reader that would take the upper folder in place.
func TestCommitSwapRace(t *testing.T) {
	d := newDaemon(t)
	const ns = "swap-race"
	c := d.client(t, ns)
	swapper := buildSwapper(t)
	host := t.TempDir()
	var b [16]byte
	rand.Read(b[:])
	secret := []byte("host secret " + hex.EncodeToString(b[:]))
	for _, name := range swapNames() {
		if err := os.WriteFile(filepath.Join(host, name), fmt.Appendf(nil, "%s\n%s\n", secret, name), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, sn := range []string{"native", "overlayfs"} {
		t.Run(sn, func(t *testing.T) { swapRace(t, d.nsContext(ns), d, c, sn, swapper, host, secret) })
	}
}

func swapRace(t *testing.T, ctx context.Context, d *daemon, c *client.Client, sn, swapper, host string, secret []byte) {
	img := importBusybox(t, ctx, c, sn)
	id := "swap-" + sn
	ctr, err := c.NewContainer(ctx, id, client.WithImage(img), client.WithSnapshotter(sn), client.WithNewSnapshot(id, img),
		client.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs("sh", "-c", swapScript(swapNames(), host)),
			oci.WithMounts([]specs.Mount{{Destination: "/swapper", Type: "bind", Source: swapper, Options: []string{"rbind", "ro"}}})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctr.Delete(context.WithoutCancel(ctx), client.WithSnapshotCleanup) })
	var out testutil.Buffer
	task, exitc := startTask(t, ctx, ctr, d.creator(nil, &out, &out))
	eventually(t, time.Minute, "the swapper", func() bool { return strings.Contains(out.String(), "ready") })

	// The diffs' blobs are kept until they are read.
	ctx, done, err := c.WithLease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer done(context.WithoutCancel(ctx))
	snaps := c.SnapshotService(sn)
	info, err := snaps.Stat(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	lower, err := snaps.View(ctx, id+"-parent", info.Parent)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { snaps.Remove(context.WithoutCancel(ctx), id+"-parent") })
	upper, err := snaps.Mounts(ctx, id)
	if err != nil {
		t.Fatal(err)
	}

	// seen counts how the layers caught /d: a folder or a symlink (the
	// swapper's exchange leaves no moment without one).
	seen := map[string]int{}
	failed := 0
	check := func(what string, desc ocispec.Descriptor) {
		t.Helper()
		how := "neither"
		walkLayer(t, ctx, c.ContentStore(), desc, func(h *tar.Header, r io.Reader) {
			switch {
			case h.Name == "d/":
				how = "folder"
			case h.Name == "d" && h.Typeflag == tar.TypeSymlink:
				how = "symlink"
			}
			data, err := io.ReadAll(r)
			if err != nil {
				t.Fatalf("%s: layer %s: %s: %v", what, desc.Digest, h.Name, err)
			}
			if bytes.Contains(data, secret) {
				t.Fatalf("%s: layer %s holds the bytes of a file of the host's %s as %s", what, desc.Digest, host, h.Name)
			}
		})
		seen[how]++
	}
	start := time.Now()
	for round := range swapRounds {
		what := fmt.Sprintf("round %d: commit", round)
		if img, err := c.Commit(ctx, id, "localhost/swap-race:"+sn); err != nil {
			// An entry replaced between two reads of it may fail a
			// round; it must never leak.
			t.Logf("%s: %v", what, err)
			failed++
		} else if r, err := unpack.Resolve(ctx, c.ContentStore(), img.Target(), nil); err != nil {
			t.Fatal(err)
		} else {
			check(what, r.Layers[len(r.Layers)-1])
		}
		what = fmt.Sprintf("round %d: diff", round)
		if desc, _, err := c.DiffService().Compare(ctx, lower, upper); err != nil {
			t.Logf("%s: %v", what, err)
			failed++
		} else {
			check(what, desc)
		}
	}
	elapsed := time.Since(start)

	if err := task.Kill(ctx, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exitc:
	case <-ctx.Done():
		t.Fatalf("the swapping container did not stop: %v", ctx.Err())
	}
	// Its last line may still be on its way through the FIFO when the
	// exit arrives: the task's Delete copies what is left of the output.
	if _, err := task.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	swaps := regexp.MustCompile(`swaps (\d+)`).FindStringSubmatch(out.String())
	if swaps == nil {
		t.Fatalf("the swapping container did not say how many swaps it made: %q", out.String())
	}
	t.Logf("%s: %d commits and %d diffs in %v (%d failed), %s swaps; /d in the layers: %v",
		sn, swapRounds, swapRounds, elapsed.Round(time.Millisecond), failed, swaps[1], seen)
	// The layers must have caught the folder swapped both ways, or the
	// race was not run.
	if seen["folder"] == 0 || seen["symlink"] == 0 {
		t.Errorf("no layer caught /d as a folder, or none as a symlink (%v): the rounds did not race the swaps", seen)
	}
}

// buildSwapper builds testdata/swapper, static, for a container of busybox.
func buildSwapper(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "swapper")
	cmd := exec.Command("go", "build", "-o", out, "./integration/testdata/swapper")
	cmd.Dir = testutil.RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build swapper: %v\n%s", err, msg)
	}
	return out
}
