package client_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"testing"

	"github.com/containerd/ttrpc"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/gc"
	"github.com/berthrt/berth/images"
	"github.com/berthrt/berth/leases"
	"github.com/berthrt/berth/namespaces"
	contentsvc "github.com/berthrt/berth/services/content"
	gcsvc "github.com/berthrt/berth/services/gc"
	imagesvc "github.com/berthrt/berth/services/images"
	leasesvc "github.com/berthrt/berth/services/leases"
	"github.com/berthrt/berth/storage/content/local"
	"github.com/berthrt/berth/storage/metadata"
)

// newImageDaemon serves content, images, leases and gc as berthd does, and
// returns a client of them and the local store underneath.
func newImageDaemon(t *testing.T) (*client.Client, content.Store) {
	t.Helper()
	dir := t.TempDir()
	db, err := metadata.Open(filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	localStore, err := local.NewStore(filepath.Join(dir, "content"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ttrpc.NewServer(ttrpc.WithUnaryServerInterceptor(errdefs.ServerErrors))
	if err != nil {
		t.Fatal(err)
	}
	gcs := metadata.NewGCScheduler(metadata.NewGC(db, localStore, metadata.GCOptions{}), metadata.GCSchedulerConfig{DeleteDelay: -1})
	contentsvc.Register(srv, db.ContentStore(localStore))
	imagesvc.Register(srv, imagesvc.Config{Store: db.Images(), GC: gcs})
	leasesvc.Register(srv, leasesvc.Config{Leases: db.Leases(), GC: gcs})
	gcsvc.Register(srv, gcs)
	sock := filepath.Join(dir, "berth.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), l) }()
	c, err := client.New(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		srv.Close()
		if err := <-served; err != nil && !errors.Is(err, ttrpc.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return c, localStore
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// An image written under a lease over the API: the lease keeps the blobs
// until the image exists; deleting the image with sync removes them.
func TestImagesLeasesGCRemote(t *testing.T) {
	c, localStore := newImageDaemon(t)
	ctx := namespaces.WithNamespace(context.Background(), "ci")
	cs := c.ContentStore()

	lctx, done, err := c.WithLease(ctx)
	must(t, err)
	put := func(p []byte, labels map[string]string) ocispec.Descriptor {
		d := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromBytes(p), Size: int64(len(p))}
		must(t, content.WriteBlob(lctx, cs, "ref-"+d.Digest.Encoded(), bytes.NewReader(p), d, content.WithLabels(labels)))
		return d
	}
	layer := put([]byte("layer"), nil)
	manifest := put([]byte("manifest"), map[string]string{gc.LabelRefContent + ".l.0": layer.Digest.String()})
	manifest.MediaType = ocispec.MediaTypeImageManifest

	// Held by the lease only: a collection keeps both.
	if _, err := c.GarbageCollect(ctx); err != nil {
		t.Fatal(err)
	}
	for _, d := range []ocispec.Descriptor{layer, manifest} {
		if _, err := cs.Info(ctx, d.Digest); err != nil {
			t.Fatalf("leased blob %s: %v", d.Digest, err)
		}
	}
	ls, err := c.LeasesService().List(ctx)
	must(t, err)
	if len(ls) != 1 {
		t.Fatalf("leases = %v", ls)
	}
	rs, err := c.LeasesService().ListResources(ctx, ls[0].ID)
	must(t, err)
	if len(rs) != 2 || rs[0].Type != leases.ResourceContent {
		t.Errorf("resources = %v", rs)
	}

	name := "registry.example/app:1"
	_, err = c.ImageService().Create(ctx, images.Image{Name: name, Target: manifest, Labels: map[string]string{"k": "v"}})
	must(t, err)
	must(t, done(ctx))
	stats, err := c.GarbageCollect(ctx)
	must(t, err)
	if stats.Blobs != 0 {
		t.Errorf("collection with the image removed %d blobs", stats.Blobs)
	}

	img, err := c.GetImage(ctx, name)
	must(t, err)
	if img.Name() != name || img.Target().Digest != manifest.Digest || img.Labels()["k"] != "v" {
		t.Errorf("GetImage = %+v", img.Metadata())
	}
	imgs, err := c.ListImages(ctx, "labels.k==v")
	must(t, err)
	if len(imgs) != 1 {
		t.Errorf("ListImages = %d", len(imgs))
	}
	if _, err := c.GetImage(namespaces.WithNamespace(ctx, "other"), name); !errdefs.IsNotFound(err) {
		t.Errorf("GetImage in another namespace: %v", err)
	}
	if _, err := c.ImageService().Create(ctx, images.Image{Name: "bad name", Target: manifest}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Create with a bad name: %v", err)
	}

	must(t, c.DeleteImage(ctx, name, client.SynchronousDelete()))
	for _, d := range []ocispec.Descriptor{layer, manifest} {
		if _, err := localStore.Info(ctx, d.Digest); !errdefs.IsNotFound(err) {
			t.Errorf("blob %s after a sync delete: %v", d.Digest, err)
		}
	}
}

// An ingest written under a lease over the API is the lease's resource.
func TestIngestUnderLeaseRemote(t *testing.T) {
	c, _ := newImageDaemon(t)
	ctx := namespaces.WithNamespace(context.Background(), "ci")
	lctx, done, err := c.WithLease(ctx, client.WithLeaseID("pull-1"))
	must(t, err)
	w, err := c.ContentStore().Writer(lctx, content.WithRef("partial"))
	must(t, err)
	_, err = w.Write([]byte("half"))
	must(t, err)
	must(t, w.Close())
	rs, err := c.LeasesService().ListResources(ctx, "pull-1")
	must(t, err)
	if !slices.Equal(rs, []leases.Resource{{Type: leases.ResourceIngest, ID: "partial"}}) {
		t.Errorf("resources = %v", rs)
	}
	// A nested WithLease reuses the outer lease.
	inner, innerDone, err := c.WithLease(lctx)
	must(t, err)
	if inner != lctx {
		t.Error("nested WithLease made a new lease")
	}
	must(t, innerDone(ctx))
	must(t, done(ctx))
	if _, err := c.LeasesService().ListResources(ctx, "pull-1"); !errdefs.IsNotFound(err) {
		t.Errorf("lease after done: %v", err)
	}
	// Writing under a lease that is gone is refused.
	if _, err := c.ContentStore().Writer(lctx, content.WithRef("late")); !errdefs.IsNotFound(err) {
		t.Errorf("Writer under a deleted lease: %v", err)
	}
}
