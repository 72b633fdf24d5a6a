package transfer

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"

	"github.com/containerd/ttrpc"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/protobuf/proto"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/events/topics"
	"github.com/berthrt/berth/images"
	"github.com/berthrt/berth/images/archive"
	"github.com/berthrt/berth/internal/apiconv"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/leases"
	"github.com/berthrt/berth/namespaces"
	imagesv1 "github.com/berthrt/berth/proto/images/v1"
	api "github.com/berthrt/berth/proto/transfer/v1"
	"github.com/berthrt/berth/snapshots"
	"github.com/berthrt/berth/storage/content/local"
	"github.com/berthrt/berth/storage/metadata"
	"github.com/berthrt/berth/storage/snapshots/native"
)

// archiveEnv serves the transfer API over a fresh database on a unix
// socket, as the daemon does.
type archiveEnv struct {
	db     *metadata.DB
	store  content.Store // namespaced
	api    api.TransferClient
	events *recorder
}

type recorder struct {
	mu     sync.Mutex // guards topics
	topics []string
}

func (r *recorder) Publish(_ context.Context, topic string, _ proto.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.topics = append(r.topics, topic)
	return nil
}

func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.topics...)
}

func newArchiveEnv(t *testing.T, max int64) *archiveEnv {
	t.Helper()
	return newArchiveEnvWith(t, max, nil)
}

// newArchiveEnvWith is newArchiveEnv with configure, when not nil,
// given the service's config (and the env's DB) before it is served.
func newArchiveEnvWith(t *testing.T, max int64, configure func(*Config, *metadata.DB)) *archiveEnv {
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
	e := &archiveEnv{db: db, store: db.ContentStore(localStore), events: &recorder{}}
	srv, err := ttrpc.NewServer(ttrpc.WithUnaryServerInterceptor(errdefs.ServerErrors))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Content: e.store, Images: db.Images(), Leases: db.Leases(), Publisher: e.events, MaxImportSize: max}
	if configure != nil {
		configure(&cfg, db)
	}
	Register(srv, cfg)
	sock := filepath.Join(dir, "berth.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(context.Background(), l)
	t.Cleanup(func() { srv.Close() })
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c := ttrpc.NewClient(conn, ttrpc.WithUnaryClientInterceptor(errdefs.ClientErrors))
	t.Cleanup(func() { c.Close() })
	e.api = api.NewTransferClient(c)
	return e
}

// testArchive builds, in a store of its own, an image of a config, two
// layers (one of 3 MiB, so that it spans chunks) and a manifest, and
// returns it with its archive as archive.Export writes it.
func testArchive(t *testing.T, name string) (images.Image, []byte, []ocispec.Descriptor) {
	t.Helper()
	store, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	put := func(mediaType string, data []byte) ocispec.Descriptor {
		d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
		if err := content.WriteBlob(t.Context(), store, "t-"+d.Digest.Encoded(), bytes.NewReader(data), d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	random := func(n int) []byte {
		p := make([]byte, n)
		rand.Read(p)
		return p
	}
	l1, l2 := random(3<<20+17), random(4096)
	layers := []ocispec.Descriptor{put(ocispec.MediaTypeImageLayer, l1), put(ocispec.MediaTypeImageLayer, l2)}
	cfg := mustJSON(t, ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layers[0].Digest, layers[1].Digest}},
	})
	config := put(ocispec.MediaTypeImageConfig, cfg)
	man := put(ocispec.MediaTypeImageManifest, mustJSON(t, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: config, Layers: layers,
	}))
	img := images.Image{Name: name, Target: man}
	var buf bytes.Buffer
	if err := archive.Export(t.Context(), store, &buf, archive.WithImages(img)); err != nil {
		t.Fatal(err)
	}
	return img, buf.Bytes(), []ocispec.Descriptor{man, config, layers[0], layers[1]}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// upload runs an Import of data with reqs after the options (nil: the
// data in chunks and the right end) and returns its last response.
func (e *archiveEnv) upload(t *testing.T, opts *api.ImportOptions, reqs []*api.ImportRequest) (*api.ImportResponse, []*api.Progress, error) {
	t.Helper()
	stream, err := e.api.Import(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		// The test's archives are far smaller than 64 chunks: no window.
		for _, req := range append([]*api.ImportRequest{{Options: opts}}, reqs...) {
			if err := stream.Send(req); err != nil {
				errc <- err
				return
			}
		}
		errc <- stream.CloseSend()
	}()
	var progress []*api.Progress
	for {
		resp, err := stream.Recv()
		if err != nil {
			<-errc
			return nil, progress, errdefs.FromTTRPC(err)
		}
		progress = append(progress, resp.GetProgress()...)
		if resp.GetResult() != nil {
			return resp, progress, <-errc
		}
	}
}

// chunks cuts data into Import requests of at most ChunkSize bytes.
func chunks(data []byte) []*api.ImportRequest {
	var reqs []*api.ImportRequest
	for off := 0; off < len(data); off += ChunkSize {
		reqs = append(reqs, &api.ImportRequest{Data: data[off:min(len(data), off+ChunkSize)]})
	}
	return reqs
}

func whole(data []byte) []*api.ImportRequest {
	return append(chunks(data), &api.ImportRequest{End: &api.ImportEnd{Size: int64(len(data))}})
}

func (e *archiveEnv) images(t *testing.T, ns string) []images.Image {
	t.Helper()
	imgs, err := e.db.Images().List(namespaces.WithNamespace(t.Context(), ns))
	if err != nil {
		t.Fatal(err)
	}
	return imgs
}

func (e *archiveEnv) leases(t *testing.T, ns string) []leases.Lease {
	t.Helper()
	ls, err := e.db.Leases().List(namespaces.WithNamespace(t.Context(), ns))
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

// export runs an Export and returns the archive's bytes and its end.
func (e *archiveEnv) export(t *testing.T, req *api.ExportRequest) ([]byte, *api.ExportEnd, error) {
	t.Helper()
	stream, err := e.api.Export(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return buf.Bytes(), nil, nil
		}
		if err != nil {
			return buf.Bytes(), nil, errdefs.FromTTRPC(err)
		}
		if len(resp.GetData()) > ChunkSize {
			t.Errorf("export: a response of %d bytes", len(resp.GetData()))
		}
		buf.Write(resp.GetData())
		if end := resp.GetEnd(); end != nil {
			if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
				t.Errorf("export: after the end: %v, want EOF", err)
			}
			return buf.Bytes(), end, nil
		}
	}
}

// TestImportExport imports an archive built by the test, exports it back
// byte for byte as archive.Export writes it locally, and checks it.
func TestImportExport(t *testing.T) {
	e := newArchiveEnv(t, 0)
	img, data, blobs := testArchive(t, "example.com/app:1")
	resp, progress, err := e.upload(t, &api.ImportOptions{Namespace: "imp"}, whole(data))
	if err != nil {
		t.Fatal(err)
	}
	res := resp.GetResult()
	if res.GetFormat() != "oci" || len(res.GetImages()) != 1 || res.GetImages()[0].GetName() != img.Name ||
		res.GetImages()[0].GetTarget().GetDigest() != img.Target.Digest.String() {
		t.Fatalf("import result: %v", res)
	}
	done := map[string]bool{}
	for _, p := range progress {
		if p.GetStatus() == "done" {
			done[p.GetDigest()] = true
		}
	}
	for _, d := range blobs {
		if !done[d.Digest.String()] {
			t.Errorf("no progress report says blob %s is done", d.Digest)
		}
	}
	if ls := e.leases(t, "imp"); len(ls) != 0 {
		t.Errorf("leases after an import: %v", ls)
	}
	if got := e.events.list(); len(got) != 1 || got[0] != topics.ImageCreate {
		t.Errorf("events: %v", got)
	}
	// Again: the image is updated.
	if _, _, err := e.upload(t, &api.ImportOptions{Namespace: "imp"}, whole(data)); err != nil {
		t.Fatal(err)
	}
	if got := e.events.list(); len(got) != 2 || got[1] != topics.ImageUpdate {
		t.Errorf("events after a second import: %v", got)
	}

	t.Run("export", func(t *testing.T) {
		ctx := namespaces.WithNamespace(t.Context(), "imp")
		stored, err := e.db.Images().Get(ctx, img.Name)
		if err != nil {
			t.Fatal(err)
		}
		var want bytes.Buffer
		if err := archive.Export(ctx, e.store, &want, archive.WithImages(stored)); err != nil {
			t.Fatal(err)
		}
		got, end, err := e.export(t, &api.ExportRequest{Namespace: "imp", Images: []*imagesv1.Image{{Name: img.Name}}, Progress: true})
		if err != nil || end == nil {
			t.Fatalf("export: end %v, %v", end, err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Errorf("export: %d bytes differ from archive.Export's %d", len(got), want.Len())
		}
		if end.GetSize() != int64(len(got)) || end.GetDigest() != digest.FromBytes(got).String() {
			t.Errorf("export end %v, archive %d bytes %s", end, len(got), digest.FromBytes(got))
		}
		// The archive the test built is the one that came back.
		if !bytes.Equal(got, data) {
			t.Errorf("export differs from the imported archive")
		}
	})

	t.Run("export missing", func(t *testing.T) {
		_, _, err := e.export(t, &api.ExportRequest{Namespace: "imp", Images: []*imagesv1.Image{{Name: "example.com/none:1"}}})
		if !errdefs.IsNotFound(err) {
			t.Errorf("export of an unknown image: %v, want NotFound", err)
		}
		gone := apiconv.ImageToProto(images.Image{Name: "x:1", Target: ocispec.Descriptor{
			MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("gone"), Size: 3}})
		got, end, err := e.export(t, &api.ExportRequest{Namespace: "imp", Images: []*imagesv1.Image{gone}})
		if !errdefs.IsNotFound(err) || len(got) != 0 || end != nil {
			t.Errorf("export of a missing target: %d bytes, end %v, %v; want nothing and NotFound", len(got), end, err)
		}
		if _, _, err := e.export(t, &api.ExportRequest{Namespace: "imp"}); !errdefs.IsInvalidArgument(err) {
			t.Errorf("export of no image: %v, want InvalidArgument", err)
		}
	})

	t.Run("check", func(t *testing.T) {
		ctx := namespaces.WithNamespace(t.Context(), "imp")
		if _, err := e.db.Images().Create(ctx, images.Image{Name: "example.com/gone:1", Target: ocispec.Descriptor{
			MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("gone"), Size: 4}}); err != nil {
			t.Fatal(err)
		}
		resp, err := e.api.Check(ctx, &api.CheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		byName := map[string]*api.ImageCheck{}
		for _, ic := range resp.GetImages() {
			byName[ic.GetImage().GetName()] = ic
		}
		var size int64
		for _, d := range blobs {
			size += d.Size
		}
		if ic := byName[img.Name]; ic.GetAvailability() != "complete" || ic.GetRequired() != 4 || ic.GetPresent() != 4 ||
			ic.GetSize() != size || ic.GetPresentSize() != size || len(ic.GetMissing()) != 0 {
			t.Errorf("check of the imported image: %v", ic)
		}
		if ic := byName["example.com/gone:1"]; ic.GetAvailability() != "unavailable" || ic.GetRequired() != 1 || ic.GetPresent() != 0 {
			t.Errorf("check of an image without content: %v", ic)
		}
		// Without its big layer the image is incomplete.
		if err := e.store.Delete(ctx, blobs[2].Digest); err != nil {
			t.Fatal(err)
		}
		resp, err = e.api.Check(ctx, &api.CheckRequest{Names: []string{img.Name}})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetImages()) != 1 {
			t.Fatalf("check of one name: %v", resp)
		}
		ic := resp.GetImages()[0]
		if ic.GetAvailability() != "incomplete" || ic.GetPresent() != 3 || len(ic.GetMissing()) != 1 ||
			ic.GetMissing()[0].GetDigest() != blobs[2].Digest.String() {
			t.Errorf("check without a layer: %v", ic)
		}
		if _, err := e.api.Check(ctx, &api.CheckRequest{Names: []string{"example.com/none:1"}}); !errdefs.IsNotFound(err) {
			t.Errorf("check of an unknown name: %v, want NotFound", err)
		}
		if _, err := e.api.Check(ctx, &api.CheckRequest{Platforms: []string{"linux/amd64"}, AllPlatforms: true}); !errdefs.IsInvalidArgument(err) {
			t.Errorf("check with platforms and all_platforms: %v, want InvalidArgument", err)
		}
	})
}

// TestImportRefused: an upload cut short (even after a whole archive),
// with a wrong end, with a chunk too large, or larger than the daemon's
// bound is refused with InvalidArgument, records no image and leaves no
// lease.
func TestImportRefused(t *testing.T) {
	_, data, _ := testArchive(t, "example.com/app:1")
	big := make([]byte, ChunkSize+1)
	for _, tc := range []struct {
		name string
		max  int64
		reqs []*api.ImportRequest
	}{
		{"truncated", 0, chunks(data[:len(data)/2])},
		{"no end", 0, chunks(data)},
		{"wrong end", 0, append(chunks(data), &api.ImportRequest{End: &api.ImportEnd{Size: int64(len(data)) + 1}})},
		{"chunk too large", 0, []*api.ImportRequest{{Data: big}}},
		{"empty chunk", 0, []*api.ImportRequest{{Data: nil}}},
		{"options again", 0, []*api.ImportRequest{{Options: &api.ImportOptions{}}}},
		{"above the bound", int64(len(data)) - 1, whole(data)},
		{"no archive", 0, whole([]byte("not a tar"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newArchiveEnv(t, tc.max)
			_, _, err := e.upload(t, &api.ImportOptions{Namespace: "imp"}, tc.reqs)
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("import: %v, want InvalidArgument", err)
			}
			if imgs := e.images(t, "imp"); len(imgs) != 0 {
				t.Errorf("images after a refused import: %v", imgs)
			}
			if ls := e.leases(t, "imp"); len(ls) != 0 {
				t.Errorf("leases after a refused import: %v", ls)
			}
			if got := e.events.list(); len(got) != 0 {
				t.Errorf("events after a refused import: %v", got)
			}
		})
	}
	t.Run("no options", func(t *testing.T) {
		e := newArchiveEnv(t, 0)
		_, _, err := e.upload(t, nil, whole(data))
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("import without options: %v, want InvalidArgument", err)
		}
	})
}

// TestImportUnderLease: an import under the request's lease leaves the
// lease to its owner.
func TestImportUnderLease(t *testing.T) {
	e := newArchiveEnv(t, 0)
	_, data, blobs := testArchive(t, "example.com/app:1")
	ctx := namespaces.WithNamespace(t.Context(), "imp")
	l, err := e.db.Leases().Create(ctx, leases.Lease{ID: "mine"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.upload(t, &api.ImportOptions{Namespace: "imp", Lease: l.ID}, whole(data)); err != nil {
		t.Fatal(err)
	}
	ls := e.leases(t, "imp")
	if len(ls) != 1 || ls[0].ID != "mine" {
		t.Fatalf("leases: %v", ls)
	}
	res, err := e.db.Leases().ListResources(ctx, "mine")
	if err != nil {
		t.Fatal(err)
	}
	if len(res) < len(blobs) {
		t.Errorf("the lease holds %d resources, want the %d blobs", len(res), len(blobs))
	}
}

// TestImportUnpackFailed: an import whose unpack fails (its layers are
// no tars) records no image, as a pull records none before its unpack:
// an image on record is one whose layers are unpacked.
func TestImportUnpackFailed(t *testing.T) {
	testutil.RequireRoot(t)
	_, data, _ := testArchive(t, "example.com/app:1")
	e := newArchiveEnvWith(t, 0, func(cfg *Config, db *metadata.DB) {
		sn, err := native.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sn.Close() })
		cfg.Snapshotter = func(string) (snapshots.Snapshotter, error) { return db.Snapshotter(native.Name, sn), nil }
		cfg.DefaultSnapshotter = native.Name
	})
	if _, _, err := e.upload(t, &api.ImportOptions{Namespace: "imp", Unpack: true}, whole(data)); err == nil {
		t.Fatal("an import of layers that are no tars unpacked")
	}
	if imgs := e.images(t, "imp"); len(imgs) != 0 {
		t.Errorf("images after an import whose unpack failed: %v", imgs)
	}
	if evs := e.events.list(); len(evs) != 0 {
		t.Errorf("events after an import whose unpack failed: %v", evs)
	}
}

// TestImportUnpackRefused: a snapshotter without unpack is
// InvalidArgument, unpack on a daemon without snapshotters
// NotImplemented; neither records an image.
func TestImportUnpackRefused(t *testing.T) {
	_, data, _ := testArchive(t, "example.com/app:1")
	for _, tc := range []struct {
		name string
		opts *api.ImportOptions
		want func(error) bool
	}{
		{"snapshotter without unpack", &api.ImportOptions{Namespace: "imp", Snapshotter: "native"}, errdefs.IsInvalidArgument},
		{"no snapshotters", &api.ImportOptions{Namespace: "imp", Unpack: true}, errdefs.IsNotImplemented},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newArchiveEnv(t, 0)
			if _, _, err := e.upload(t, tc.opts, whole(data)); !tc.want(err) {
				t.Errorf("import: %v", err)
			}
			if imgs := e.images(t, "imp"); len(imgs) != 0 {
				t.Errorf("images after a refused import: %v", imgs)
			}
		})
	}
}
