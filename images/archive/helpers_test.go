package archive_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/gc"
	"github.com/berthrt/berth/images"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/namespaces"
	"github.com/berthrt/berth/storage/content/local"
	"github.com/berthrt/berth/storage/metadata"
)

// env is a content store and an image store in a namespace, as the
// daemon has them.
type env struct {
	db         *metadata.DB
	localStore content.Store
	store      content.Store
	images     images.Store
	ctx        context.Context
}

func newEnv(t testing.TB) *env {
	t.Helper()
	dir := t.TempDir()
	localStore, err := local.NewStore(filepath.Join(dir, "content"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := metadata.Open(filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return &env{db: db, localStore: localStore, store: db.ContentStore(localStore), images: db.Images(), ctx: namespaces.WithNamespace(context.Background(), "test")}
}

// collect runs garbage collection.
func (e *env) collect(t *testing.T) gc.Stats {
	t.Helper()
	stats, err := metadata.NewGC(e.db, e.localStore, metadata.GCOptions{}).Collect(e.ctx)
	if err != nil {
		t.Fatalf("GC: %v", err)
	}
	return stats
}

// put writes blobs of im into the store and records the image name.
func (e *env) put(t *testing.T, im *testImage, name string) images.Image {
	t.Helper()
	for d, data := range im.blobs {
		desc := ocispec.Descriptor{Digest: d, Size: int64(len(data))}
		if err := content.WriteBlob(e.ctx, e.store, "test-"+d.String(), bytes.NewReader(data), desc); err != nil {
			t.Fatal(err)
		}
	}
	img, err := e.images.Create(e.ctx, images.Image{Name: name, Target: im.root})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// has reports whether the store holds dgst.
func (e *env) has(dgst digest.Digest) bool {
	_, err := e.store.Info(e.ctx, dgst)
	return err == nil
}

// testImage is an image built by a test: its root and every blob.
type testImage struct {
	root  ocispec.Descriptor
	blobs map[digest.Digest][]byte
	// manifests and layers by platform "os/arch".
	manifests map[string]ocispec.Descriptor
	layers    map[string]ocispec.Descriptor
	configs   map[string]ocispec.Descriptor
}

func (im *testImage) add(mediaType string, data []byte) ocispec.Descriptor {
	d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
	im.blobs[d.Digest] = data
	return d
}

// busyboxTar is an uncompressed tar of the host's /bin/busybox as
// bin/busybox and bin/sh, made once per test binary.
var busyboxTar = sync.OnceValues(func() ([]byte, error) {
	bin, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(0, 0)},
		{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin)), ModTime: time.Unix(0, 0)},
		{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777, ModTime: time.Unix(0, 0)},
	} {
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(bin); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
})

// busyboxLayer is busyboxTar gzip'd.
var busyboxLayer = sync.OnceValues(func() ([]byte, error) {
	raw, err := busyboxTar()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(raw); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
})

// requireBusybox needs /bin/busybox (busybox-static, make deps).
func requireBusybox(t *testing.T) ([]byte, []byte) {
	t.Helper()
	raw, err := busyboxTar()
	testutil.Require(t, err == nil, "needs /bin/busybox (busybox-static): "+errString(err))
	gz, err := busyboxLayer()
	if err != nil {
		t.Fatal(err)
	}
	return raw, gz
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// buildImage builds an OCI image of the busybox layer for each platform
// ("linux/amd64"; other platforms get a small layer of their own): one
// manifest when there is one platform, else an index of them.
func buildImage(t *testing.T, plats ...string) *testImage {
	t.Helper()
	raw, gz := requireBusybox(t)
	im := &testImage{blobs: map[digest.Digest][]byte{}, manifests: map[string]ocispec.Descriptor{}, layers: map[string]ocispec.Descriptor{}, configs: map[string]ocispec.Descriptor{}}
	var idx ocispec.Index
	for _, p := range plats {
		layer, diffID := gz, digest.FromBytes(raw)
		if p != "linux/amd64" {
			// gzip'd too: skopeo compresses an uncompressed layer on
			// its way into an OCI layout, which changes the digests.
			other := tarOf(t, file{name: "arch", data: []byte(p)})
			layer, diffID = gzipOf(t, other), digest.FromBytes(other)
		}
		os, arch, _ := cut(p)
		cfg := ocispec.Image{
			Platform: ocispec.Platform{OS: os, Architecture: arch},
			Config:   ocispec.ImageConfig{Cmd: []string{"/bin/sh"}},
			RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}},
		}
		mediaType := ocispec.MediaTypeImageLayerGzip
		cd := im.add(ocispec.MediaTypeImageConfig, mustJSON(t, cfg))
		ld := im.add(mediaType, layer)
		m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cd, Layers: []ocispec.Descriptor{ld}}
		md := im.add(ocispec.MediaTypeImageManifest, mustJSON(t, m))
		md.Platform = &ocispec.Platform{OS: os, Architecture: arch}
		im.manifests[p], im.layers[p], im.configs[p] = md, ld, cd
		idx.Manifests = append(idx.Manifests, md)
	}
	if len(plats) == 1 {
		im.root = im.manifests[plats[0]]
		im.root.Platform = nil
		return im
	}
	idx.SchemaVersion, idx.MediaType = 2, ocispec.MediaTypeImageIndex
	im.root = im.add(ocispec.MediaTypeImageIndex, mustJSON(t, idx))
	return im
}

func cut(p string) (string, string, bool) {
	for i := range p {
		if p[i] == '/' {
			return p[:i], p[i+1:], true
		}
	}
	return p, "", false
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// file is one entry of an archive a test builds.
type file struct {
	name string
	data []byte
	hdr  *tar.Header // when set, written as it is (Size from data unless set)
}

// tarOf builds a tar of files.
func tarOf(t testing.TB, files ...file) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := f.hdr
		if h == nil {
			h = &tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: 0o644}
		}
		if h.Typeflag == tar.TypeReg && h.Size == 0 {
			h.Size = int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if len(f.data) > 0 {
			if _, err := tw.Write(f.data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// layoutFiles are the files of an OCI layout of im whose index.json has
// one entry, im's root, annotated with refName.
func layoutFiles(t *testing.T, im *testImage, refName string) []file {
	t.Helper()
	root := im.root
	root.Annotations = map[string]string{ocispec.AnnotationRefName: refName}
	files := []file{{name: "oci-layout", data: []byte(`{"imageLayoutVersion":"1.0.0"}`)}}
	for d, data := range im.blobs {
		files = append(files, file{name: "blobs/sha256/" + d.Encoded(), data: data})
	}
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{root}}
	return append(files, file{name: "index.json", data: mustJSON(t, idx)})
}

func without(files []file, name string) []file {
	var out []file
	for _, f := range files {
		if f.name != name {
			out = append(out, f)
		}
	}
	return out
}

func gzipOf(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
