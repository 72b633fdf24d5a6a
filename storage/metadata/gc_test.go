package metadata

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/gc"
	"github.com/berthrt/berth/images"
	"github.com/berthrt/berth/leases"
)

// gcEnv is a DB, its namespaced content store, the local store under it
// and a collector whose clock the test sets.
type gcEnv struct {
	db    *DB
	store content.Store
	local content.Store
	gc    *GC
	now   time.Time
}

func newGCEnv(t *testing.T, opts GCOptions) *gcEnv {
	t.Helper()
	s, local, db := newContentStore(t)
	e := &gcEnv{db: db, store: s, local: local, now: time.Now()}
	opts.Now = func() time.Time { return e.now }
	e.gc = NewGC(db, local, opts)
	return e
}

// put commits p in the namespace of ctx with labels and returns its
// descriptor.
func (e *gcEnv) put(t *testing.T, ctx context.Context, mediaType string, p []byte, labels map[string]string) ocispec.Descriptor {
	t.Helper()
	desc := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(p), Size: int64(len(p))}
	w, err := e.store.Writer(ctx, content.WithRef("put-"+desc.Digest.Encoded()), content.WithDescriptor(desc))
	if errdefs.IsAlreadyExists(err) {
		return desc
	}
	requireNoErr(t, err)
	defer w.Close()
	_, err = w.Write(p)
	requireNoErr(t, err)
	err = w.Commit(ctx, desc.Size, desc.Digest, content.WithLabels(labels))
	if !errdefs.IsAlreadyExists(err) {
		requireNoErr(t, err)
	}
	return desc
}

func (e *gcEnv) collect(t *testing.T) gc.Stats {
	t.Helper()
	stats, err := e.gc.Collect(context.Background())
	requireNoErr(t, err)
	return stats
}

// has reports whether the namespace of ctx records dgst, and whether the
// local store holds it.
func (e *gcEnv) has(ctx context.Context, dgst digest.Digest) (recorded, stored bool) {
	_, err := e.store.Info(ctx, dgst)
	_, lerr := e.local.Info(ctx, dgst)
	return err == nil, lerr == nil
}

func (e *gcEnv) requireKept(t *testing.T, ctx context.Context, what string, descs ...ocispec.Descriptor) {
	t.Helper()
	for _, d := range descs {
		if rec, st := e.has(ctx, d.Digest); !rec || !st {
			t.Errorf("%s %s: recorded %v, stored %v; want both", what, d.Digest, rec, st)
		}
	}
}

func (e *gcEnv) requireGone(t *testing.T, ctx context.Context, what string, descs ...ocispec.Descriptor) {
	t.Helper()
	for _, d := range descs {
		if rec, st := e.has(ctx, d.Digest); rec || st {
			t.Errorf("%s %s: recorded %v, stored %v; want neither", what, d.Digest, rec, st)
		}
	}
}

// testGraph writes an index → manifest → config and two layers, labelled
// as a pull labels them, and returns the index and every blob.
func (e *gcEnv) testGraph(t *testing.T, ctx context.Context, seed string) (ocispec.Descriptor, []ocispec.Descriptor) {
	t.Helper()
	cfg := e.put(t, ctx, ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux","seed":"`+seed+`"}`), nil)
	l0 := e.put(t, ctx, ocispec.MediaTypeImageLayerGzip, []byte("layer 0 "+seed), nil)
	l1 := e.put(t, ctx, ocispec.MediaTypeImageLayerGzip, []byte("layer 1 "+seed), nil)
	mf, _ := json.Marshal(ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{l0, l1}})
	manifest := e.put(t, ctx, ocispec.MediaTypeImageManifest, mf, map[string]string{
		gc.LabelRefContent + ".config": cfg.Digest.String(),
		gc.LabelRefContent + ".l.0":    l0.Digest.String(),
		gc.LabelRefContent + ".l.1":    l1.Digest.String(),
	})
	ix, _ := json.Marshal(ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{manifest}})
	index := e.put(t, ctx, ocispec.MediaTypeImageIndex, ix, map[string]string{
		gc.LabelRefContent + ".m.0": manifest.Digest.String(),
	})
	return index, []ocispec.Descriptor{index, manifest, cfg, l0, l1}
}

func TestGCImageGraph(t *testing.T) {
	e := newGCEnv(t, GCOptions{})
	ctx := nsCtx("ci")
	index, blobs := e.testGraph(t, ctx, "a")
	_, err := e.db.Images().Create(ctx, images.Image{Name: "example.com/a:1", Target: index})
	requireNoErr(t, err)
	stray := e.put(t, ctx, "application/octet-stream", []byte("nothing refers to me"), nil)
	root := e.put(t, ctx, "application/octet-stream", []byte("a root"), map[string]string{gc.LabelRoot: "yes"})

	stats := e.collect(t)
	e.requireKept(t, ctx, "image blob", blobs...)
	e.requireKept(t, ctx, "gc.root", root)
	e.requireGone(t, ctx, "stray", stray)
	if stats.ContentRecords != 1 || stats.Blobs != 1 || stats.BlobBytes != stray.Size {
		t.Errorf("stats = %+v, want the stray only", stats)
	}

	requireNoErr(t, e.db.Images().Delete(ctx, "example.com/a:1"))
	stats = e.collect(t)
	e.requireGone(t, ctx, "image blob", blobs...)
	e.requireKept(t, ctx, "gc.root", root)
	if stats.Blobs != len(blobs) {
		t.Errorf("stats = %+v, want %d blobs", stats, len(blobs))
	}
	// The namespace holds nothing but the root now.
	if n := countRecords(t, e.db, "ci"); n != 1 {
		t.Errorf("%d records left, want 1", n)
	}
}

// Two images share layers: deleting one keeps what the other reaches.
func TestGCSharedWithinNamespace(t *testing.T) {
	e := newGCEnv(t, GCOptions{})
	ctx := nsCtx("ci")
	ia, a := e.testGraph(t, ctx, "same")
	_, err := e.db.Images().Create(ctx, images.Image{Name: "a", Target: ia})
	requireNoErr(t, err)
	_, err = e.db.Images().Create(ctx, images.Image{Name: "b", Target: ia})
	requireNoErr(t, err)
	requireNoErr(t, e.db.Images().Delete(ctx, "a"))
	e.collect(t)
	e.requireKept(t, ctx, "blob of b", a...)
}

func TestGCLease(t *testing.T) {
	e := newGCEnv(t, GCOptions{})
	ctx := nsCtx("ci")
	_, err := e.db.Leases().Create(ctx, leases.Lease{ID: "pull"})
	requireNoErr(t, err)
	lctx := leases.WithLease(ctx, "pull")
	_, blobs := e.testGraph(t, lctx, "leased")
	e.collect(t)
	e.requireKept(t, ctx, "leased", blobs...)

	requireNoErr(t, e.db.Leases().Delete(ctx, "pull"))
	e.collect(t)
	e.requireGone(t, ctx, "after the lease", blobs...)
}

func TestGCLeaseExpiry(t *testing.T) {
	e := newGCEnv(t, GCOptions{})
	ctx := nsCtx("ci")
	_, err := e.db.Leases().Create(ctx, leases.Lease{ID: "short", Labels: map[string]string{
		leases.ExpireLabel: e.now.Add(time.Hour).Format(time.RFC3339Nano),
	}})
	requireNoErr(t, err)
	d := e.put(t, leases.WithLease(ctx, "short"), "x", []byte("for an hour"), nil)
	e.collect(t)
	e.requireKept(t, ctx, "before expiry", d)

	e.now = e.now.Add(2 * time.Hour)
	stats := e.collect(t)
	e.requireGone(t, ctx, "after expiry", d)
	if stats.Leases != 1 {
		t.Errorf("stats = %+v, want 1 lease", stats)
	}
	if _, err := e.db.Leases().ListResources(ctx, "short"); !errdefs.IsNotFound(err) {
		t.Errorf("expired lease: %v", err)
	}
}

// A blob two namespaces hold stays in the local store until both drop it.
func TestGCSharedBetweenNamespaces(t *testing.T) {
	e := newGCEnv(t, GCOptions{})
	a, b := nsCtx("a"), nsCtx("b")
	p := []byte("shared")
	da := e.put(t, a, "x", p, map[string]string{gc.LabelRoot: "1"})
	db := e.put(t, b, "x", p, map[string]string{gc.LabelRoot: "1"})
	if da.Digest != db.Digest {
		t.Fatal("different digests")
	}
	_, err := e.store.Update(a, content.Info{Digest: da.Digest}, "labels."+gc.LabelRoot)
	requireNoErr(t, err)
	e.collect(t)
	if rec, _ := e.has(a, da.Digest); rec {
		t.Error("namespace a still records the blob it let go")
	}
	e.requireKept(t, b, "held by b", db)

	requireNoErr(t, e.store.Delete(b, db.Digest))
	e.collect(t)
	if _, err := e.local.Info(b, db.Digest); !errdefs.IsNotFound(err) {
		t.Errorf("blob no namespace records: %v", err)
	}
}

// Ingests: an open Writer's is never removed; an idle one is once it is
// older than the TTL, unless a lease holds it.
func TestGCIngests(t *testing.T) {
	e := newGCEnv(t, GCOptions{IngestTTL: time.Minute})
	ctx := nsCtx("ci")
	_, err := e.db.Leases().Create(ctx, leases.Lease{ID: "l"})
	requireNoErr(t, err)

	open, err := e.store.Writer(ctx, content.WithRef("open"))
	requireNoErr(t, err)
	defer open.Close()
	_, err = open.Write([]byte("in flight"))
	requireNoErr(t, err)
	for _, ref := range []string{"idle", "leased"} {
		wctx := ctx
		if ref == "leased" {
			wctx = leases.WithLease(ctx, "l")
		}
		w, err := e.store.Writer(wctx, content.WithRef(ref))
		requireNoErr(t, err)
		_, err = w.Write([]byte(ref))
		requireNoErr(t, err)
		requireNoErr(t, w.Close())
	}

	e.collect(t) // nothing is old yet
	requireIngests(t, e, ctx, "idle", "leased", "open")

	e.now = e.now.Add(time.Hour)
	stats := e.collect(t)
	requireIngests(t, e, ctx, "leased", "open")
	if stats.Ingests != 1 {
		t.Errorf("stats = %+v, want 1 ingest", stats)
	}
	// The open Writer still commits.
	requireNoErr(t, open.Commit(ctx, 0, ""))
	requireNoErr(t, e.db.Leases().Delete(ctx, "l"))
	e.collect(t)
	requireIngests(t, e, ctx)
}

func requireIngests(t *testing.T, e *gcEnv, ctx context.Context, want ...string) {
	t.Helper()
	sts, err := e.store.ListStatuses(ctx)
	requireNoErr(t, err)
	got := map[string]bool{}
	for _, st := range sts {
		got[st.Ref] = true
	}
	wantSet := map[string]bool{}
	for _, r := range want {
		wantSet[r] = true
	}
	if !maps.Equal(got, wantSet) {
		t.Errorf("ingests = %v, want %v", got, want)
	}
}

// Containers keep what their labels name and their snapshot; snapshots
// keep their parents and what their labels name.
func TestGCContainersAndSnapshots(t *testing.T) {
	snaps := &fakeSnapshots{name: "overlayfs", snaps: map[string]fakeSnapshot{
		"rootfs":  {parent: "layer-2"},
		"layer-2": {parent: "layer-1", labels: map[string]string{gc.LabelRefContent: digest.FromString("cfg").String()}},
		"layer-1": {},
		"stray":   {},
		"leased":  {},
		"by-hand": {parent: "base", labels: map[string]string{gc.LabelRoot: "x"}},
		"base":    {},
	}}
	e := newGCEnv(t, GCOptions{Snapshots: []SnapshotCollector{snaps}})
	ctx := nsCtx("ci")
	cfg := e.put(t, ctx, "x", []byte("cfg"), nil)
	spec := e.put(t, ctx, "x", []byte("spec"), nil)
	c := testContainer(t, "web")
	c.Snapshotter, c.SnapshotKey = "overlayfs", "rootfs"
	c.Labels = map[string]string{gc.LabelRefContent + ".spec": spec.Digest.String()}
	_, err := e.db.Containers().Create(ctx, c)
	requireNoErr(t, err)
	_, err = e.db.Leases().Create(ctx, leases.Lease{ID: "l"})
	requireNoErr(t, err)
	requireNoErr(t, e.db.Leases().AddResource(ctx, "l", leases.Resource{Type: leases.ResourceSnapshotPrefix + "overlayfs", ID: "leased"}))

	stats := e.collect(t)
	e.requireKept(t, ctx, "referenced", cfg, spec)
	if _, ok := snaps.snaps["stray"]; ok || stats.Snapshots != 1 {
		t.Errorf("snapshots left %v, stats %+v; want all but stray", snaps.keys(), stats)
	}
	for _, k := range []string{"rootfs", "layer-2", "layer-1", "leased", "by-hand", "base"} {
		if _, ok := snaps.snaps[k]; !ok {
			t.Errorf("snapshot %s removed", k)
		}
	}
}

// Commits under a lease while collections run: every committed blob stays
// readable, none is swept between landing in the local store and getting
// its record.
func TestGCConcurrentCommits(t *testing.T) {
	e := newGCEnv(t, GCOptions{})
	ctx := nsCtx("ci")
	_, err := e.db.Leases().Create(ctx, leases.Lease{ID: "l"})
	requireNoErr(t, err)
	lctx := leases.WithLease(ctx, "l")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := e.gc.Collect(context.Background()); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var descs []ocispec.Descriptor
	for i := range 100 {
		p := []byte(fmt.Sprintf("blob %d", i))
		desc := ocispec.Descriptor{Digest: digest.FromBytes(p), Size: int64(len(p))}
		requireNoErr(t, content.WriteBlob(lctx, e.store, fmt.Sprint("r", i), bytes.NewReader(p), desc))
		descs = append(descs, desc)
	}
	close(stop)
	wg.Wait()
	e.collect(t)
	for _, d := range descs {
		if _, err := content.ReadBlob(ctx, e.store, d); err != nil {
			t.Fatalf("blob %s: %v", d.Digest, err)
		}
	}
}

func countRecords(t *testing.T, db *DB, ns string) int {
	t.Helper()
	n := 0
	requireNoErr(t, db.View(func(tx *bolt.Tx) error {
		if b := blobsBucket(tx, ns); b != nil {
			n = countAtDepth(b, 1)
		}
		return nil
	}))
	return n
}

type fakeSnapshot struct {
	parent string
	labels map[string]string
}

// fakeSnapshots is a SnapshotCollector over a map, for namespace "ci".
type fakeSnapshots struct {
	name  string
	snaps map[string]fakeSnapshot
}

func (f *fakeSnapshots) Snapshotter() string { return f.name }

func (f *fakeSnapshots) Walk(_ context.Context, ns string, fn func(key, parent string, labels map[string]string) error) error {
	if ns != "ci" {
		return nil
	}
	for k, s := range f.snaps {
		if err := fn(k, s.parent, s.labels); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeSnapshots) Remove(_ context.Context, ns string, keep map[string]struct{}) (int, error) {
	if ns != "ci" {
		return 0, nil
	}
	n := 0
	for k := range f.snaps {
		if _, ok := keep[k]; !ok {
			delete(f.snaps, k)
			n++
		}
	}
	return n, nil
}

func (f *fakeSnapshots) keys() []string {
	var ks []string
	for k := range f.snaps {
		ks = append(ks, k)
	}
	return ks
}
