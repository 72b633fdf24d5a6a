package integration

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/diff"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/images/archive"
	"github.com/berthrt/berth/internal/testimage"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/mount"
	"github.com/berthrt/berth/oci"
	"github.com/berthrt/berth/snapshots"
	"github.com/berthrt/berth/unpack"
)

// commitBase names the busybox image the commit tests start from.
const commitBase = "docker.io/library/busybox:latest"

// commitChanges is what the containers of the commit tests do to their
// image: a new file, a deleted file of the image, a new folder.
const commitChanges = "echo committed > /new.txt && rm /etc/group && mkdir /newdir"

// commitCheck prints what a container of a committed image sees of
// commitChanges.
const commitCheck = "cat /new.txt; test -e /etc/group && echo group || echo no-group; test -d /newdir && echo newdir"

// importBusybox imports busybox as commitBase, unpacked into sn.
func importBusybox(t *testing.T, ctx context.Context, c *client.Client, sn string) *client.Image {
	t.Helper()
	imported, err := c.Import(ctx, busyboxArchive(t), archive.WithUnpack(sn))
	if err != nil {
		t.Fatal(err)
	}
	return imported[0]
}

// busyboxArchive returns an OCI archive of busybox named commitBase.
func busyboxArchive(t *testing.T) *bytes.Buffer {
	t.Helper()
	img, err := testimage.Busybox("")
	if err != nil {
		t.Fatal(err)
	}
	var arch bytes.Buffer
	if err := img.WriteOCIArchive(&arch, commitBase); err != nil {
		t.Fatal(err)
	}
	return &arch
}

// layerEntries returns the names in layer desc of the content store.
func layerEntries(t *testing.T, ctx context.Context, cs content.Store, desc ocispec.Descriptor) []string {
	t.Helper()
	var names []string
	walkLayer(t, ctx, cs, desc, func(h *tar.Header, _ io.Reader) { names = append(names, h.Name) })
	return names
}

// walkLayer calls fn with each entry of layer desc of the content store,
// and a reader of the entry's bytes.
func walkLayer(t *testing.T, ctx context.Context, cs content.Store, desc ocispec.Descriptor, fn func(*tar.Header, io.Reader)) {
	t.Helper()
	ra, err := cs.ReaderAt(ctx, desc)
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	r, err := diff.Decompress(desc.MediaType, content.NewReader(ra))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		fn(h, tr)
	}
}

// TestCommitPushPull commits a running container of busybox (paused
// meanwhile) that wrote a file, deleted one of the image's and made a
// folder, pushes the new image to a real registry, deletes every local
// image and collects the garbage (nothing is left), pulls the image back
// and runs it: the container sees the changes, and the image's config has
// the new command, diff ID and history entry.
func TestCommitPushPull(t *testing.T) {
	reg := testutil.StartRegistry(t, testutil.RegistryConfig{})
	d := newDaemon(t)
	const ns = "commit"
	ctx := d.nsContext(ns)
	c := d.client(t, ns)
	base := importBusybox(t, ctx, c, "overlayfs")
	baseSpec, err := base.Spec(ctx)
	if err != nil {
		t.Fatal(err)
	}

	ctr, err := c.NewContainer(ctx, "src", client.WithImage(base), client.WithSnapshotter("overlayfs"), client.WithNewSnapshot("src", base),
		client.WithNewSpec(oci.WithImageConfig(base), oci.WithProcessArgs("sh", "-c", commitChanges+" && echo ready && exec sleep 600")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctr.Delete(context.WithoutCancel(ctx), client.WithSnapshotCleanup) })
	var out testutil.Buffer
	task, err := ctr.NewTask(ctx, d.creator(nil, &out, &out))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { task.Delete(context.WithoutCancel(ctx), client.WithProcessKill) })
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the container's changes", func() bool { return strings.Contains(out.String(), "ready") })

	ref := reg.Addr + "/test/committed:1"
	img, err := c.Commit(ctx, "src", ref, client.WithCommitPause, client.WithCommitCmd("sh", "-c", commitCheck), client.WithCommitMessage("test commit"))
	if err != nil {
		t.Fatal(err)
	}
	if st, err := task.Status(ctx); err != nil || st.Status != client.Running {
		t.Errorf("task after a commit with pause: %v, %v; want it running again", st.Status, err)
	}
	if got, err := c.GetImage(ctx, ref); err != nil || got.Target().Digest != img.Target().Digest {
		t.Fatalf("image %s after the commit: %v, %v", ref, got, err)
	}
	if leases, err := c.LeasesService().List(ctx); err != nil || len(leases) != 0 {
		t.Errorf("leases after the commit: %v, %v", leases, err)
	}
	if err := c.Push(ctx, ref, img.Target(), client.WithPlainHTTP()); err != nil {
		t.Fatal(err)
	}

	// Nothing local is left: the container, its snapshot and both images
	// go, and the collection empties the content store.
	if _, err := task.Delete(ctx, client.WithProcessKill); err != nil {
		t.Fatal(err)
	}
	if err := ctr.Delete(ctx, client.WithSnapshotCleanup); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{ref, commitBase} {
		if err := c.DeleteImage(ctx, name, client.SynchronousDelete()); err != nil {
			t.Fatal(err)
		}
	}
	var blobs []string
	if err := c.ContentStore().Walk(ctx, func(info content.Info) error {
		blobs = append(blobs, info.Digest.String())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(blobs) != 0 {
		t.Errorf("blobs after deleting everything: %v", blobs)
	}

	pulled, err := c.Pull(ctx, ref, client.WithPlainHTTP(), client.WithPullUnpack, client.WithPullSnapshotter("overlayfs"))
	if err != nil {
		t.Fatal(err)
	}
	if pulled.Target().Digest != img.Target().Digest {
		t.Errorf("pulled %s, pushed %s", pulled.Target().Digest, img.Target().Digest)
	}
	spec, err := pulled.Spec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(spec.RootFS.DiffIDs); n != len(baseSpec.RootFS.DiffIDs)+1 || !slices.Equal(spec.RootFS.DiffIDs[:n-1], baseSpec.RootFS.DiffIDs) {
		t.Errorf("diff IDs %v, want busybox's %v and one more", spec.RootFS.DiffIDs, baseSpec.RootFS.DiffIDs)
	}
	if h := spec.History; len(h) == 0 || h[len(h)-1].Comment != "test commit" || h[len(h)-1].CreatedBy != "berth commit" {
		t.Errorf("history %+v, want the commit's entry last", spec.History)
	}
	if !slices.Equal(spec.Config.Env, baseSpec.Config.Env) {
		t.Errorf("env %v, want busybox's %v", spec.Config.Env, baseSpec.Config.Env)
	}
	// The container runs the image's new command.
	got, code := runFromImage(t, ctx, d, c, "dst", pulled, "overlayfs", false, spec.Config.Cmd...)
	if want := "committed\nno-group\nnewdir\n"; code != 0 || got != want {
		t.Errorf("container of the pulled image: exit %d, output %q, want %q", code, got, want)
	}
}

// TestCommitExited commits a container whose task has exited, on the
// native snapshotter, with a zstd layer, unpacks the new image through the
// diff API's Apply (the client's DiffService as unpack's Applier) and runs
// it; the layer holds exactly the changes.
func TestCommitExited(t *testing.T) {
	d := newDaemon(t)
	const ns = "commit-exited"
	ctx := d.nsContext(ns)
	c := d.client(t, ns)
	base := importBusybox(t, ctx, c, "native")
	if _, code := runFromImage(t, ctx, d, c, "src", base, "native", false, "sh", "-c", commitChanges); code != 0 {
		t.Fatalf("container exit %d", code)
	}
	img, err := c.Commit(ctx, "src", "example.com/test/exited:1", client.WithCommitMediaType(ocispec.MediaTypeImageLayerZstd))
	if err != nil {
		t.Fatal(err)
	}
	r, err := unpack.Resolve(ctx, c.ContentStore(), img.Target(), nil)
	if err != nil {
		t.Fatal(err)
	}
	top := r.Layers[len(r.Layers)-1]
	if top.MediaType != ocispec.MediaTypeImageLayerZstd {
		t.Errorf("new layer %s, want zstd", top.MediaType)
	}
	names := layerEntries(t, ctx, c.ContentStore(), top)
	slices.Sort(names)
	if want := []string{"etc/", "etc/.wh.group", "new.txt", "newdir/"}; !slices.Equal(names, want) {
		t.Errorf("layer entries %q, want %q", names, want)
	}
	if _, err := unpack.Unpack(ctx, r, unpack.Options{
		Content: c.ContentStore(), Snapshotter: c.SnapshotService("native"), SnapshotterName: "native", Applier: c.DiffService(), Leases: c.LeasesService(),
	}); err != nil {
		t.Fatal(err)
	}
	got, code := runFromImage(t, ctx, d, c, "dst", img, "native", false, "sh", "-c", commitCheck)
	if want := "committed\nno-group\nnewdir\n"; code != 0 || got != want {
		t.Errorf("container of the committed image: exit %d, output %q, want %q", code, got, want)
	}
	// A container not made from an image has nothing to commit.
	if _, err := c.NewContainer(ctx, "bare", client.WithNewSpec()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Commit(ctx, "bare", "example.com/test/bare:1"); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("commit of a container without an image: %v, want FailedPrecondition", err)
	}
	if _, err := c.Commit(ctx, "nope", "example.com/test/nope:1"); !errdefs.IsNotFound(err) {
		t.Errorf("commit of a missing container: %v, want NotFound", err)
	}
}

// TestDiffAPI: a diff of the same mounts is an empty layer; bad mounts and
// an unknown media type are errors of their classes; berthctl snapshots
// diff writes the layer of an active snapshot (against its parent and
// against none) and of a committed one, and leaves no temporary view.
func TestDiffAPI(t *testing.T) {
	d := newDaemon(t)
	const ns = "diff-api"
	ctx := d.nsContext(ns)
	c := d.client(t, ns)
	base := importBusybox(t, ctx, c, "overlayfs")
	chainID, err := base.ChainID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sn := c.SnapshotService("overlayfs")
	view, err := sn.View(ctx, "v", chainID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sn.Remove(context.WithoutCancel(ctx), "v") })

	ds := c.DiffService()
	empty, _, err := ds.Compare(ctx, view, view)
	if err != nil {
		t.Fatal(err)
	}
	if names := layerEntries(t, ctx, c.ContentStore(), empty); len(names) != 0 {
		t.Errorf("diff of the same mounts: %v, want no entries", names)
	}
	for _, tc := range []struct {
		name         string
		lower, upper []mount.Mount
		opts         []client.DiffOpt
		class        error
	}{
		{"no upper", view, nil, nil, errdefs.ErrInvalidArgument},
		{"missing folder", nil, []mount.Mount{{Type: "bind", Source: "/nonexistent/berth", Options: []string{"rbind"}}}, nil, errdefs.ErrNotFound},
		{"unknown filesystem", nil, []mount.Mount{{Type: "nosuchfs", Source: "none"}}, nil, errdefs.ErrInvalidArgument},
		{"unknown media type", view, view, []client.DiffOpt{client.WithDiffMediaType("application/x-tar")}, errdefs.ErrNotImplemented},
	} {
		if _, _, err := ds.Compare(ctx, tc.lower, tc.upper, tc.opts...); !errors.Is(err, tc.class) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.class)
		}
	}

	// berthctl snapshots diff of a container's snapshot.
	if _, code := runFromImage(t, ctx, d, c, "w", base, "overlayfs", false, "sh", "-c", commitChanges); code != 0 {
		t.Fatalf("container exit %d", code)
	}
	ctl := newCtl(t, d)
	dgst := strings.TrimSpace(ctl.ok("-n", ns, "snapshots", "--snapshotter", "overlayfs", "diff", "--label", "owner=test", "w"))
	info, err := c.ContentStore().Info(ctx, digestOf(t, dgst))
	if err != nil {
		t.Fatal(err)
	}
	if info.Labels["owner"] != "test" || info.Labels["berth.io/gc.root"] == "" || info.Labels[diff.LabelUncompressed] == "" {
		t.Errorf("labels of the diff: %v", info.Labels)
	}
	names := layerEntries(t, ctx, c.ContentStore(), ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: info.Digest, Size: info.Size})
	slices.Sort(names)
	if want := []string{"etc/", "etc/.wh.group", "new.txt", "newdir/"}; !slices.Equal(names, want) {
		t.Errorf("berthctl snapshots diff w: entries %q, want %q", names, want)
	}
	// Against no parent: every file of the image is in it; of the
	// image's committed top snapshot: the same files, uncompressed.
	all := strings.TrimSpace(ctl.ok("-n", ns, "sn", "--snapshotter", "overlayfs", "diff", "--media-type", ocispec.MediaTypeImageLayer, chainID))
	allInfo, err := c.ContentStore().Info(ctx, digestOf(t, all))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(layerEntries(t, ctx, c.ContentStore(), ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: allInfo.Digest, Size: allInfo.Size})); n < 100 {
		t.Errorf("diff of the committed busybox layer: %d entries, want all of busybox", n)
	}
	if allInfo.Labels[diff.LabelUncompressed] != all {
		t.Errorf("an uncompressed layer's diff ID %q, want its digest %s", allInfo.Labels[diff.LabelUncompressed], all)
	}
	ctl.fails(1, []string{"application/x-tar", "not implemented"}, "-n", ns, "sn", "--snapshotter", "overlayfs", "diff", "--media-type", "application/x-tar", "w")
	ctl.fails(1, []string{"not found"}, "-n", ns, "sn", "--snapshotter", "overlayfs", "diff", "missing-key")
	// No temporary view is left by the commands.
	if err := sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if strings.HasPrefix(info.Name, "diff-") {
			t.Errorf("temporary view %s left", info.Name)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// digestOf parses what berthctl printed as a digest.
func digestOf(t *testing.T, s string) digest.Digest {
	t.Helper()
	d, err := digest.Parse(s)
	if err != nil {
		t.Fatalf("berthctl printed %q, not a digest: %v", s, err)
	}
	return d
}
