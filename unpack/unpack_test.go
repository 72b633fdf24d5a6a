package unpack_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/archive"
	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/diff"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/testimage"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/leases"
	"github.com/berthrt/berth/mount"
	"github.com/berthrt/berth/namespaces"
	"github.com/berthrt/berth/snapshots"
	"github.com/berthrt/berth/storage/content/local"
	"github.com/berthrt/berth/storage/metadata"
	"github.com/berthrt/berth/storage/snapshots/native"
	"github.com/berthrt/berth/unpack"
)

type env struct {
	ctx     context.Context
	content content.Store
	sn      snapshots.Snapshotter
	leases  leases.Manager
	// collect runs a garbage collection of the metadata store, its
	// blobs and the snapshotter.
	collect func(context.Context) error
}

func newEnv(t *testing.T) env { return openEnv(t, "native", native.New) }

// openEnv opens a metadata store, a content store and the snapshotter
// that open makes (named name) in a temporary folder, as berthd wires
// them.
func openEnv(t testing.TB, name string, open func(root string) (snapshots.Snapshotter, error)) env {
	t.Helper()
	testutil.RequireRoot(t)
	dir := t.TempDir()
	db, err := metadata.Open(filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	blobs, err := local.NewStore(filepath.Join(dir, "content"))
	if err != nil {
		t.Fatal(err)
	}
	sn, err := open(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	nsn := db.Snapshotter(name, sn)
	t.Cleanup(func() { nsn.Close() })
	collector := metadata.NewGC(db, blobs, metadata.GCOptions{Snapshots: []metadata.SnapshotCollector{db.SnapshotCollector(name, sn)}})
	return env{
		ctx: namespaces.WithNamespace(context.Background(), "test"), content: db.ContentStore(blobs), sn: nsn, leases: db.Leases(),
		collect: func(ctx context.Context) error {
			_, err := collector.Collect(ctx)
			return err
		},
	}
}

func (e env) write(t testing.TB, img *testimage.Image) {
	t.Helper()
	for dgst, data := range img.Blobs {
		d := ocispec.Descriptor{Digest: dgst, Size: int64(len(data))}
		if err := content.WriteBlob(e.ctx, e.content, "t-"+dgst.Encoded(), bytes.NewReader(data), d); err != nil && !errdefs.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
}

func (e env) unpack(t *testing.T, img *testimage.Image) (string, []unpack.Status, error) {
	t.Helper()
	resolved, err := unpack.Resolve(e.ctx, e.content, img.Manifest, nil)
	if err != nil {
		t.Fatal(err)
	}
	var seen []unpack.Status
	top, err := unpack.Unpack(e.ctx, resolved, unpack.Options{
		Content: e.content, Snapshotter: e.sn, SnapshotterName: "native", Applier: diff.NewApplier(t.TempDir()), Leases: e.leases,
		Progress: func(_ ocispec.Descriptor, s unpack.Status) { seen = append(seen, s) },
	})
	return top, seen, err
}

// mountView mounts a view named key of the committed snapshot top on a
// folder of the test's, unmounted when the test ends, and returns it.
func (e env) mountView(t testing.TB, key, top string) string {
	t.Helper()
	ms, err := e.sn.View(e.ctx, key, top)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := mount.All(ms, dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mount.UnmountAll(dir, 0) })
	return dir
}

// files lists the paths under dir, relative, sorted.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if rel, _ := filepath.Rel(dir, p); rel != "." {
			out = append(out, rel)
		}
		return nil
	})
	slices.Sort(out)
	return out
}

func TestUnpack(t *testing.T) {
	e := newEnv(t)
	img, err := testimage.Build(ocispec.ImageConfig{},
		[]testimage.Entry{testimage.Dir("a"), testimage.File("a/1", "one"), testimage.File("a/2", "two"), testimage.Dir("b"), testimage.File("b/x", "x")},
		[]testimage.Entry{testimage.Whiteout("a/1"), testimage.Dir("b"), testimage.Opaque("b"), testimage.File("b/y", "y")},
		[]testimage.Entry{testimage.File("c", "c")},
	)
	if err != nil {
		t.Fatal(err)
	}
	e.write(t, img)
	top, seen, err := e.unpack(t, img)
	if err != nil {
		t.Fatal(err)
	}
	if want := identity.ChainID(img.DiffIDs).String(); top != want {
		t.Fatalf("top %s, want %s", top, want)
	}
	if want := []unpack.Status{"unpacking", "unpacked", "unpacking", "unpacked", "unpacking", "unpacked"}; !slices.Equal(seen, want) {
		t.Errorf("progress %v, want %v", seen, want)
	}
	info, err := e.content.Info(e.ctx, img.Config.Digest)
	if err != nil || info.Labels[unpack.SnapshotLabel("native")] != top {
		t.Errorf("config labels %v, %v", info.Labels, err)
	}
	got := files(t, e.mountView(t, "view", top))
	if want := []string{"a", "a/2", "b", "b/y", "c"}; !slices.Equal(got, want) {
		t.Errorf("files %v, want %v", got, want)
	}
	var n int
	e.sn.Walk(e.ctx, func(context.Context, snapshots.Info) error { n++; return nil })
	if n != 4 { // three layers and the view; no temporary snapshot
		t.Errorf("%d snapshots, want 4", n)
	}

	// Again: every layer exists.
	if _, seen, err = e.unpack(t, img); err != nil || !slices.Equal(seen, []unpack.Status{"exists", "exists", "exists"}) {
		t.Errorf("second unpack: %v, %v", seen, err)
	}
}

func TestUnpackWrongDiffID(t *testing.T) {
	e := newEnv(t)
	img, err := testimage.Build(ocispec.ImageConfig{}, []testimage.Entry{testimage.File("f", "1")})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := testimage.Build(ocispec.ImageConfig{}, []testimage.Entry{testimage.File("f", "2")})
	e.write(t, img)
	e.write(t, other)
	resolved, err := unpack.Resolve(e.ctx, e.content, img.Manifest, nil)
	if err != nil {
		t.Fatal(err)
	}
	resolved.Layers = other.Layers // a layer whose diff ID is not the config's
	_, err = unpack.Unpack(e.ctx, resolved, unpack.Options{Content: e.content, Snapshotter: e.sn, SnapshotterName: "native", Applier: diff.NewApplier(t.TempDir()), Leases: e.leases})
	if !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("unpack of a wrong layer: %v, want FailedPrecondition", err)
	}
	var n int
	e.sn.Walk(e.ctx, func(context.Context, snapshots.Info) error { n++; return nil })
	if n != 0 {
		t.Errorf("%d snapshots left after a failed unpack", n)
	}
}

// collectingApplier runs a garbage collection before it applies each
// layer: the collection a container's delete starts, landing in the
// middle of an unpack.
type collectingApplier struct {
	diff.Applier
	t       *testing.T
	collect func(context.Context) error
}

func (a collectingApplier) Apply(ctx context.Context, desc ocispec.Descriptor, ms []mount.Mount, p content.Provider, opts ...archive.ApplyOpt) (ocispec.Descriptor, error) {
	if err := a.collect(ctx); err != nil {
		a.t.Errorf("collect: %v", err)
	}
	return a.Applier.Apply(ctx, desc, ms, p, opts...)
}

// TestUnpackLeasedAgainstGC unpacks, on a context without a lease, an
// image whose blobs a lease of their own keeps, while a garbage
// collection runs before each layer is applied: the unpack's own lease
// (Options.Leases) keeps the snapshot being applied and the layers
// committed below it, so the unpack succeeds, its lease is gone after,
// and the image's snapshots stay, kept by its labelled config. Without a
// lease, the collection removed the snapshot under the unpack (issue 16:
// TestCommitExited's client-side unpack raced the collection after a
// container's delete).
func TestUnpackLeasedAgainstGC(t *testing.T) {
	e := newEnv(t)
	img, err := testimage.Build(ocispec.ImageConfig{},
		[]testimage.Entry{testimage.File("a", "1")}, []testimage.Entry{testimage.File("b", "2")}, []testimage.Entry{testimage.File("c", "3")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.leases.Create(e.ctx, leases.Lease{ID: "blobs"}); err != nil {
		t.Fatal(err)
	}
	held := e
	held.ctx = leases.WithLease(e.ctx, "blobs")
	held.write(t, img)
	resolved, err := unpack.Resolve(e.ctx, e.content, img.Manifest, nil)
	if err != nil {
		t.Fatal(err)
	}
	o := unpack.Options{Content: e.content, Snapshotter: e.sn, SnapshotterName: "native",
		Applier: collectingApplier{Applier: diff.NewApplier(t.TempDir()), t: t, collect: e.collect}}
	if _, err := unpack.Unpack(e.ctx, resolved, o); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("unpack with no lease and no Options.Leases: %v, want InvalidArgument", err)
	}
	o.Leases = e.leases
	top, err := unpack.Unpack(e.ctx, resolved, o)
	if err != nil {
		t.Fatalf("unpack with collections between its layers: %v", err)
	}
	ls, err := e.leases.List(e.ctx, `labels."`+unpack.LeaseLabel+`"`)
	if err != nil || len(ls) != 0 {
		t.Errorf("the unpack's leases after it: %v, %v", ls, err)
	}
	if err := e.collect(e.ctx); err != nil {
		t.Fatal(err)
	}
	for i := range img.DiffIDs {
		chainID := identity.ChainID(img.DiffIDs[:i+1]).String()
		if _, err := e.sn.Stat(e.ctx, chainID); err != nil {
			t.Errorf("layer %d (%s) after a collection: %v", i, chainID, err)
		}
	}
	if want := identity.ChainID(img.DiffIDs).String(); top != want {
		t.Errorf("top %s, want %s", top, want)
	}
}

// refetching serves a layer that a pull starts over while it is read:
// the first fails readers of it hand out some of the layer's bytes, then
// ErrRefetched; with garbled, other bytes instead (what a registry sent
// the first time), which the apply fails on before it meets the refetch.
// As an Arriving store (settles), Settle reports unverified, and readers
// opened after it serve the blob as it is.
type refetching struct {
	unpack.Store
	layer          digest.Digest
	fails          int
	garbled        bool
	opens, settled int
}

func (r *refetching) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	ra, err := r.Store.ReaderAt(ctx, desc)
	if err != nil || desc.Digest != r.layer {
		return ra, err
	}
	r.opens++
	if r.opens > r.fails || r.settled > 0 {
		return ra, nil
	}
	return refetchedReader{ReaderAt: ra, garbled: r.garbled}, nil
}

// settles is a refetching that is an unpack.Arriving.
type settles struct {
	*refetching
	unverified bool
}

func (s settles) Settle(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	s.settled++
	return s.unverified, nil
}

type refetchedReader struct {
	content.ReaderAt
	garbled bool
}

func (r refetchedReader) ReadAt(p []byte, off int64) (int, error) {
	half := r.Size() / 2
	if off >= half {
		return 0, fmt.Errorf("blob: %w", unpack.ErrRefetched)
	}
	p = p[:min(int64(len(p)), half-off)]
	n, err := r.ReaderAt.ReadAt(p, off)
	if r.garbled {
		for i := range p[:n] {
			p[i] ^= 0x55
		}
	}
	return n, err
}

// TestUnpackRefetched applies a layer whose fetch starts over, or whose
// bytes are not yet checked, while it is applied. With a store that is
// not an Arriving one, a refetch applies the layer again, three times at
// most. With an Arriving one, any failure waits for the pull's verdict
// and applies the layer again once, from the checked blob, when the
// failed apply may have read unchecked bytes, and not otherwise. The
// result is the layer's, and no temporary snapshot is left, whether the
// unpack succeeds or not.
func TestUnpackRefetched(t *testing.T) {
	for _, tc := range []struct {
		name              string
		fails             int
		garbled, arriving bool
		unverified        bool
		ok                bool
		opens, settles    int
		wantRefetched     bool
	}{
		{name: "refetched-twice", fails: 2, ok: true, opens: 3},
		{name: "refetched-thrice", fails: 3, opens: 3, wantRefetched: true},
		{name: "arriving-refetched", fails: 5, arriving: true, unverified: true, ok: true, opens: 2, settles: 1},
		{name: "arriving-garbled", fails: 5, garbled: true, arriving: true, unverified: true, ok: true, opens: 2, settles: 1},
		{name: "arriving-checked-failure", fails: 5, garbled: true, arriving: true, opens: 1, settles: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			img, err := testimage.Build(ocispec.ImageConfig{},
				[]testimage.Entry{testimage.Dir("a"), testimage.File("a/1", strings.Repeat("one", 10000))},
				[]testimage.Entry{testimage.File("a/2", strings.Repeat("two", 10000))},
			)
			if err != nil {
				t.Fatal(err)
			}
			e.write(t, img)
			resolved, err := unpack.Resolve(e.ctx, e.content, img.Manifest, nil)
			if err != nil {
				t.Fatal(err)
			}
			r := &refetching{Store: e.content, layer: img.Layers[1].Digest, fails: tc.fails, garbled: tc.garbled}
			var store unpack.Store = r
			if tc.arriving {
				store = settles{refetching: r, unverified: tc.unverified}
			}
			top, err := unpack.Unpack(e.ctx, resolved, unpack.Options{Content: store, Snapshotter: e.sn, SnapshotterName: "native", Applier: diff.NewApplier(t.TempDir()), Leases: e.leases})
			if r.opens != tc.opens || r.settled != tc.settles {
				t.Errorf("the layer was opened %d times and settled %d, want %d and %d", r.opens, r.settled, tc.opens, tc.settles)
			}
			var keys []string
			e.sn.Walk(e.ctx, func(_ context.Context, i snapshots.Info) error { keys = append(keys, i.Name); return nil })
			if !tc.ok {
				if err == nil || errors.Is(err, unpack.ErrRefetched) != tc.wantRefetched {
					t.Fatalf("unpack: %v, want an error (ErrRefetched: %v)", err, tc.wantRefetched)
				}
				if len(keys) != 1 { // the bottom layer, committed
					t.Fatalf("snapshots %v after a failed unpack, want the bottom layer's only", keys)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != 2 {
				t.Fatalf("snapshots %v, want the two layers' only", keys)
			}
			dir := e.mountView(t, "view", top)
			for name, want := range map[string]string{"a/1": strings.Repeat("one", 10000), "a/2": strings.Repeat("two", 10000)} {
				if got, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(got) != want {
					t.Errorf("%s: %d bytes, %v; want the layer's", name, len(got), err)
				}
			}
		})
	}
}
