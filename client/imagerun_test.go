package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/images"
	"github.com/berthrt/berth/leases"
	"github.com/berthrt/berth/namespaces"
	"github.com/berthrt/berth/oci"
	tasksv1 "github.com/berthrt/berth/proto/tasks/v1"
)

// Methods of the daemon, as the fake counts them.
const (
	rpcServices     = "/berth.services.introspection.v1.Introspection/Services"
	rpcLeaseCreate  = "/berth.services.leases.v1.Leases/Create"
	rpcLeaseDelete  = "/berth.services.leases.v1.Leases/Delete"
	rpcContentInfo  = "/berth.services.content.v1.Content/Info"
	rpcContentRead  = "/berth.services.content.v1.Content/Read"
	rpcPrepare      = "/berth.services.snapshots.v1.Snapshots/Prepare"
	rpcView         = "/berth.services.snapshots.v1.Snapshots/View"
	rpcMounts       = "/berth.services.snapshots.v1.Snapshots/Mounts"
	rpcContainerGet = "/berth.services.containers.v1.Containers/Get"
	rpcContainerNew = "/berth.services.containers.v1.Containers/Create"
	rpcTaskCreate   = "/berth.services.tasks.v1.Tasks/Create"
	fakeLayerDiffID = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
)

// fakeImage stores a one-layer image's config and manifest in the fake
// daemon and returns it.
func fakeImage(t *testing.T, c *Client, f *fakeDaemon) *Image {
	t.Helper()
	config, err := json.Marshal(ocispec.Image{
		Config: ocispec.ImageConfig{Cmd: []string{"/bin/true"}},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{fakeLayerDiffID}},
	})
	if err != nil {
		t.Fatal(err)
	}
	configDgst := f.content.add(config)
	manifest, err := json.Marshal(ocispec.Manifest{
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: configDgst, Size: int64(len(config))},
		Layers:    []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromString("layer"), Size: 5}},
	})
	if err != nil {
		t.Fatal(err)
	}
	manifestDgst := f.content.add(manifest)
	return NewImage(c, images.Image{Name: "app", Target: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: manifestDgst, Size: int64(len(manifest))}})
}

// A container made from an image costs the round trips it needs and no
// more, and the independent ones go at once: the default snapshotter and
// the image's manifest are in flight together (the fake holds each until
// the others arrive, so calls made one after the other fail), no
// Content/Info precedes a read (the descriptor gives the size), the
// snapshot is made by Containers.Create (no lease, no Prepare or View),
// and NewTask mounts the snapshot Create described without looking the
// container and its snapshot up. What the caller gives (a snapshotter, a
// lease) is not asked for; the caller's lease goes with the Create, for
// the daemon to add the snapshot to it. A daemon that ignores Create's
// snapshot gets the Prepare right after the record, still without a
// lease.
func TestNewContainerFromImageRoundTrips(t *testing.T) {
	tests := []struct {
		name        string
		snapshotter string // WithSnapshotter's, "" for none
		callerLease bool   // NewContainer under the caller's lease
		view        bool
		older       bool // the daemon predates Create's snapshot
		gate        []string
		want        map[string]int
	}{
		{
			name: "defaults",
			gate: []string{rpcServices, rpcContentRead},
			want: map[string]int{rpcServices: 1, rpcContentRead: 2, rpcContainerNew: 1},
		},
		{
			name:        "snapshotter named",
			snapshotter: "other",
			want:        map[string]int{rpcContentRead: 2, rpcContainerNew: 1},
		},
		{
			name:        "caller's lease, view",
			callerLease: true,
			view:        true,
			gate:        []string{rpcServices, rpcContentRead},
			want:        map[string]int{rpcServices: 1, rpcContentRead: 2, rpcContainerNew: 1},
		},
		{
			name:  "older daemon",
			older: true,
			gate:  []string{rpcServices, rpcContentRead},
			want:  map[string]int{rpcServices: 1, rpcContentRead: 2, rpcContainerNew: 1, rpcPrepare: 1},
		},
		{
			name:  "older daemon, view",
			older: true,
			view:  true,
			gate:  []string{rpcServices, rpcContentRead},
			want:  map[string]int{rpcServices: 1, rpcContentRead: 2, rpcContainerNew: 1, rpcView: 1},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, f := connect(t)
			f.containers.older = tt.older
			ctx := namespaces.WithNamespace(context.Background(), "ci")
			img := fakeImage(t, c, f)
			callerLease := ""
			if tt.callerLease {
				lctx, done, err := c.WithLease(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer done(ctx)
				ctx = lctx
				callerLease, _ = leases.FromContext(lctx)
			}
			f.rpcs.counts()
			f.rpcs.setGate(tt.gate...)

			id := "c" + strconv.Itoa(i)
			snap := WithNewSnapshot(id, img)
			if tt.view {
				snap = WithNewSnapshotView(id, img)
			}
			opts := []NewContainerOpts{WithImage(img)}
			if tt.snapshotter != "" {
				opts = append(opts, WithSnapshotter(tt.snapshotter))
			}
			opts = append(opts, snap, WithNewSpec(oci.WithImageConfig(img)))
			ctr, err := c.NewContainer(ctx, id, opts...)
			if err != nil {
				t.Fatal(err)
			}
			if got := f.rpcs.counts(); !maps.Equal(got, tt.want) {
				t.Errorf("NewContainer made the calls %v, want %v", got, tt.want)
			}
			if !tt.callerLease && f.leases.liveCount() != 0 {
				t.Errorf("%d leases left after NewContainer", f.leases.liveCount())
			}
			f.containers.mu.Lock()
			createLeases := f.containers.createLeases
			f.containers.mu.Unlock()
			if !slices.Equal(createLeases, []string{callerLease}) {
				t.Errorf("Containers/Create came under the leases %q, want %q", createLeases, callerLease)
			}
			wantSnapshotter := tt.snapshotter
			if wantSnapshotter == "" {
				wantSnapshotter = fakeDefaultSnapshotter
			}
			f.containers.mu.Lock()
			rec := f.containers.byID[id]
			f.containers.mu.Unlock()
			if rec.GetSnapshotter() != wantSnapshotter || rec.GetSnapshotKey() != id || rec.GetImage() != "app" {
				t.Errorf("record: snapshotter %q, key %q, image %q", rec.GetSnapshotter(), rec.GetSnapshotKey(), rec.GetImage())
			}

			// NewTask mounts what Create (or Prepare) returned, asking
			// nothing first.
			task, err := ctr.NewTask(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := f.rpcs.counts(); !maps.Equal(got, map[string]int{rpcTaskCreate: 1}) {
				t.Errorf("NewTask made the calls %v, want Tasks/Create only", got)
			}
			creates := f.tasks.requestsOf(func(r any) bool { _, ok := r.(*tasksv1.CreateTaskRequest); return ok })
			rootfs := creates[len(creates)-1].(*tasksv1.CreateTaskRequest).GetRootfs()
			f.snapshots.mu.Lock()
			want := f.snapshots.mounts[wantSnapshotter+"/"+id]
			f.snapshots.mu.Unlock()
			if len(rootfs) != 1 || !slices.Equal(rootfs[0].GetOptions(), want[0].GetOptions()) || rootfs[0].GetType() != want[0].GetType() {
				t.Errorf("Tasks/Create rootfs %v, want the snapshot's %v", rootfs, want)
			}
			f.tasks.exit(id, "", 0)
			if _, err := task.Delete(ctx); err != nil {
				t.Fatal(err)
			}

			// A loaded container looks its snapshot up, as before.
			loaded, err := c.LoadContainer(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			f.rpcs.counts()
			if _, err := loaded.NewTask(ctx, nil); err != nil {
				t.Fatal(err)
			}
			if got := f.rpcs.counts(); !maps.Equal(got, map[string]int{rpcContainerGet: 1, rpcMounts: 1, rpcTaskCreate: 1}) {
				t.Errorf("NewTask of a loaded container made the calls %v", got)
			}
		})
	}
}

// A daemon that ignores Create's snapshot, and then refuses the Prepare
// that NewContainer makes after the record, leaves nothing: the record
// is deleted again, and the error is Prepare's.
func TestNewContainerOlderDaemonPrepareFails(t *testing.T) {
	c, f := connect(t)
	f.containers.older = true
	refused := fmt.Errorf("no room: %w", errdefs.ErrResourceExhausted)
	f.snapshots.refuse = refused
	ctx := namespaces.WithNamespace(context.Background(), "ci")
	img := fakeImage(t, c, f)
	_, err := c.NewContainer(ctx, "web", WithNewSnapshot("web-rootfs", img), WithNewSpec(oci.WithImageConfig(img)))
	if !errors.Is(err, errdefs.ErrResourceExhausted) || !strings.Contains(err.Error(), "web-rootfs") {
		t.Fatalf("NewContainer with a refused Prepare: %v, want its error naming the snapshot", err)
	}
	if _, err := c.LoadContainer(ctx, "web"); !errdefs.IsNotFound(err) {
		t.Errorf("the container after its snapshot was refused: %v, want not found", err)
	}
	if n := f.leases.liveCount(); n != 0 {
		t.Errorf("%d leases left", n)
	}
}

// A spec option that reads the container's files (a user name) needs the
// snapshot before the container: it is prepared on its own, under a lease
// of NewContainer's, and Create does not make it again. When the create
// fails after that, the snapshot is removed and the lease deleted.
func TestNewContainerSnapshotForSpec(t *testing.T) {
	c, f := connect(t)
	ctx := namespaces.WithNamespace(context.Background(), "ci")
	img := fakeImage(t, c, f)
	f.rpcs.counts()
	// The fake's mounts name folders that do not exist: mounting them to
	// read /etc/passwd fails, and so does the create.
	_, err := c.NewContainer(ctx, "web", WithNewSnapshot("web-rootfs", img), WithNewSpec(oci.WithImageConfig(img), oci.WithUser("daemon")))
	if err == nil {
		t.Fatal("NewContainer mounted a snapshot of the fake")
	}
	got := f.rpcs.counts()
	if got[rpcPrepare] != 1 || got[rpcLeaseCreate] != 1 || got[rpcLeaseDelete] != 1 || got[rpcContainerNew] != 0 {
		t.Errorf("NewContainer made the calls %v, want one Prepare under a lease of its own and no Create", got)
	}
	f.snapshots.mu.Lock()
	removed := f.snapshots.removed
	f.snapshots.mu.Unlock()
	if want := []string{fakeDefaultSnapshotter + "/web-rootfs"}; !slices.Equal(removed, want) {
		t.Errorf("removed the snapshots %q after the failed create, want %q", removed, want)
	}
	if n := f.leases.liveCount(); n != 0 {
		t.Errorf("%d leases left", n)
	}
}

// A failed lookup ends NewContainer with its error, and the lease made
// beside it is deleted: nothing is left behind.
func TestNewContainerFromImageFails(t *testing.T) {
	c, f := connect(t)
	ctx := namespaces.WithNamespace(context.Background(), "ci")
	img := fakeImage(t, c, f)
	f.content.mu.Lock()
	delete(f.content.blobs, img.Target().Digest.String())
	f.content.mu.Unlock()
	_, err := c.NewContainer(ctx, "c1", WithNewSnapshot("c1", img))
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), img.Target().Digest.String()) {
		t.Fatalf("NewContainer of an image without its manifest: %v, want not found naming %s", err, img.Target().Digest)
	}
	if n := f.leases.liveCount(); n != 0 {
		t.Errorf("%d leases left", n)
	}
	if got := f.rpcs.counts(); got[rpcPrepare] != 0 || got[rpcContainerNew] != 0 {
		t.Errorf("calls after the failure: %v", got)
	}
	if _, ok := leases.FromContext(ctx); ok {
		t.Error("the caller's context got a lease")
	}
}

// ReadBlob reads a small blob in one Read stream, without Info, and
// verifies what it read: a missing blob is NotFound naming its digest; a
// stored blob of another size or with other bytes is FailedPrecondition
// naming the sizes.
func TestReadBlobOneRoundTrip(t *testing.T) {
	c, f := connect(t)
	ctx := namespaces.WithNamespace(context.Background(), "ci")
	cs := c.ContentStore()
	data := []byte("a manifest, or a config")
	dgst := f.content.add(data)
	other := digest.FromString("other bytes")
	f.content.put(other, []byte("not the other bytes"))

	f.rpcs.counts()
	got, err := content.ReadBlob(ctx, cs, ocispec.Descriptor{Digest: dgst, Size: int64(len(data))})
	if err != nil || string(got) != string(data) {
		t.Fatalf("ReadBlob = %q, %v", got, err)
	}
	if calls := f.rpcs.counts(); !maps.Equal(calls, map[string]int{rpcContentRead: 1}) {
		t.Errorf("ReadBlob made the calls %v, want one Read", calls)
	}

	absent := digest.FromString("absent")
	tests := []struct {
		name  string
		desc  ocispec.Descriptor
		class error
		says  []string
	}{
		{"missing", ocispec.Descriptor{Digest: absent, Size: 3}, errdefs.ErrNotFound, []string{absent.String()}},
		{"stored larger", ocispec.Descriptor{Digest: dgst, Size: 4}, errdefs.ErrFailedPrecondition, []string{dgst.String(), strconv.Itoa(len(data)) + " bytes", "says 4"}},
		{"stored smaller", ocispec.Descriptor{Digest: dgst, Size: 100}, errdefs.ErrFailedPrecondition, []string{dgst.String(), strconv.Itoa(len(data)) + " bytes", "says 100"}},
		{"other bytes", ocispec.Descriptor{Digest: other, Size: int64(len("not the other bytes"))}, errdefs.ErrFailedPrecondition, []string{other.String()}},
		{"bad digest", ocispec.Descriptor{Digest: "sha256:nope", Size: 3}, errdefs.ErrInvalidArgument, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := content.ReadBlob(ctx, cs, tt.desc)
			if !errors.Is(err, tt.class) {
				t.Fatalf("ReadBlob: %v, want %v", err, tt.class)
			}
			for _, s := range tt.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("ReadBlob: %q does not say %q", err, s)
				}
			}
		})
	}
}
