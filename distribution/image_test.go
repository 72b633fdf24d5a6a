package distribution_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/distribution"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/storage/content/contenttest"
	"github.com/berthrt/berth/storage/content/local"
)

// testImage is an image built by a test: its root descriptor and every
// blob by digest.
type testImage struct {
	root  ocispec.Descriptor
	blobs map[digest.Digest][]byte
	// manifests by platform "os/arch" for an index.
	manifests map[string]ocispec.Descriptor
}

func (im *testImage) add(mediaType string, data []byte) ocispec.Descriptor {
	d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
	im.blobs[d.Digest] = data
	return d
}

// busyboxLayer is a gzip'd tar of the host's /bin/busybox as bin/busybox
// and bin/sh, made once per test binary.
var busyboxLayer = sync.OnceValues(func() ([]byte, error) {
	bin, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, h := range []*tar.Header{
		{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin))},
		{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777},
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
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
})

// randomLayer is n incompressible bytes presented as an uncompressed
// layer.
func randomLayer(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// manifestFor adds a config for platform and a manifest of layers to im.
func (im *testImage) manifestFor(t testing.TB, platform ocispec.Platform, layers ...ocispec.Descriptor) ocispec.Descriptor {
	t.Helper()
	cfg := ocispec.Image{Platform: platform, RootFS: ocispec.RootFS{Type: "layers"}}
	cfg.Config.Cmd = []string{"/bin/sh"}
	for _, l := range layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.Digest) // not unpacked here
	}
	cfgData, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    im.add(ocispec.MediaTypeImageConfig, cfgData),
		Layers:    layers,
	}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	d := im.add(ocispec.MediaTypeImageManifest, data)
	p := platform
	d.Platform = &p
	return d
}

// newImage is a single-platform (linux/amd64) busybox image with extra
// layers after the busybox one.
func newImage(t testing.TB, extra ...[]byte) *testImage {
	t.Helper()
	im := &testImage{blobs: map[digest.Digest][]byte{}, manifests: map[string]ocispec.Descriptor{}}
	bb, err := busyboxLayer()
	if err != nil {
		t.Fatal(err)
	}
	layers := []ocispec.Descriptor{im.add(ocispec.MediaTypeImageLayerGzip, bb)}
	for _, e := range extra {
		layers = append(layers, im.add(ocispec.MediaTypeImageLayer, e))
	}
	d := im.manifestFor(t, distribution.DefaultPlatform(), layers...)
	d.Platform = nil
	im.root = d
	im.manifests["linux/amd64"] = d
	return im
}

// newIndex is an index of two platforms, linux/amd64 and linux/arm64,
// sharing the busybox layer, each with a small layer of its own.
func newIndex(t testing.TB) *testImage {
	t.Helper()
	im := &testImage{blobs: map[digest.Digest][]byte{}, manifests: map[string]ocispec.Descriptor{}}
	bb, err := busyboxLayer()
	if err != nil {
		t.Fatal(err)
	}
	shared := im.add(ocispec.MediaTypeImageLayerGzip, bb)
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	for _, arch := range []string{"amd64", "arm64"} {
		own := im.add(ocispec.MediaTypeImageLayer, []byte("layer of "+arch+strings.Repeat(".", 100)))
		d := im.manifestFor(t, ocispec.Platform{OS: "linux", Architecture: arch}, shared, own)
		im.manifests["linux/"+arch] = d
		idx.Manifests = append(idx.Manifests, d)
	}
	data, err := json.Marshal(idx)
	if err != nil {
		t.Fatal(err)
	}
	im.root = im.add(ocispec.MediaTypeImageIndex, data)
	return im
}

// store writes every blob of im into a new local content store.
func (im *testImage) store(t testing.TB) content.Store {
	t.Helper()
	s := newStore(t)
	for d, b := range im.blobs {
		desc := ocispec.Descriptor{Digest: d, Size: int64(len(b))}
		if err := content.WriteBlob(context.Background(), s, "test-"+d.String(), bytes.NewReader(b), desc); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// reachable returns the blobs of im reachable from desc.
func (im *testImage) reachable(t testing.TB, desc ocispec.Descriptor) []ocispec.Descriptor {
	t.Helper()
	out := []ocispec.Descriptor{desc}
	switch desc.MediaType {
	case ocispec.MediaTypeImageIndex:
		var idx ocispec.Index
		if err := json.Unmarshal(im.blobs[desc.Digest], &idx); err != nil {
			t.Fatal(err)
		}
		for _, m := range idx.Manifests {
			out = append(out, im.reachable(t, m)...)
		}
	case ocispec.MediaTypeImageManifest:
		var m ocispec.Manifest
		if err := json.Unmarshal(im.blobs[desc.Digest], &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m.Config)
		out = append(out, m.Layers...)
	}
	return out
}

func newStore(t testing.TB) content.Store {
	t.Helper()
	s, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// requireBlobs checks that store holds exactly the bytes of each of descs.
func requireBlobs(t testing.TB, store content.Store, im *testImage, descs ...ocispec.Descriptor) {
	t.Helper()
	for _, d := range descs {
		got, err := contenttest.ReadAll(context.Background(), store, d)
		if err != nil {
			t.Fatalf("blob %s (%s): %v", d.Digest, d.MediaType, err)
		}
		if !bytes.Equal(got, im.blobs[d.Digest]) {
			t.Fatalf("blob %s: bytes differ", d.Digest)
		}
	}
}

// requireAbsent checks that store lacks each of descs.
func requireAbsent(t testing.TB, store content.Store, descs ...ocispec.Descriptor) {
	t.Helper()
	for _, d := range descs {
		if _, err := store.Info(context.Background(), d.Digest); err == nil {
			t.Fatalf("blob %s (%s) is in the store", d.Digest, d.MediaType)
		}
	}
}

// resolver returns a Resolver that reaches plain-HTTP registries and
// reads no Docker config but the one given (if any).
func resolver(t testing.TB, opts distribution.ResolverOptions) *distribution.Resolver {
	t.Helper()
	opts.PlainHTTP = true
	if opts.DockerConfig == "" {
		opts.DockerConfig = filepath.Join(t.TempDir(), "no-config.json")
	}
	r, err := distribution.NewResolver(opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// push pushes im to ref.
func push(t testing.TB, r *distribution.Resolver, im *testImage, ref string) {
	t.Helper()
	if err := distribution.Push(context.Background(), r, im.store(t), ref, im.root); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// startRegistry starts a plain-HTTP registry without auth.
func startRegistry(t testing.TB) *testutil.Registry {
	t.Helper()
	return testutil.StartRegistry(t, testutil.RegistryConfig{})
}

// proxy is an HTTP proxy in front of a registry that logs requests and
// can cut or corrupt one blob's download.
type proxy struct {
	Addr string

	mu       sync.Mutex // guards the fields below
	requests []proxyRequest
	clock    int                     // orders the starts and ends of requests
	cutAfter map[digest.Digest]int64 // cut the next download of a blob after n bytes
	stallAt  map[digest.Digest]int64 // stop every download of a blob after n bytes
	corrupt  map[digest.Digest]bool  // flip a byte of every download of a blob
}

type proxyRequest struct {
	Method, Path, Range string
	// Digest is the digest query parameter (the PUT that ends a blob upload).
	Digest string
	// Start and End order the request's arrival and the end of its
	// response among all others; End is 0 while it is in flight.
	Start, End int
}

func newProxy(t testing.TB, target string) *proxy {
	t.Helper()
	p := &proxy{cutAfter: map[digest.Digest]int64{}, stallAt: map[digest.Digest]int64{}, corrupt: map[digest.Digest]bool{}}
	u := &url.URL{Scheme: "http", Host: target}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorLog = log.New(io.Discard, "", 0)
	rp.ModifyResponse = func(resp *http.Response) error {
		d := blobDigest(resp.Request.URL.Path)
		if d == "" || resp.Request.Method != http.MethodGet {
			return nil
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if n, ok := p.cutAfter[d]; ok {
			delete(p.cutAfter, d)
			resp.Body = &cutReader{r: resp.Body, n: n}
		}
		if n, ok := p.stallAt[d]; ok {
			resp.Body = &cutReader{r: resp.Body, n: n, stall: resp.Request.Context().Done()}
		}
		if p.corrupt[d] {
			resp.Body = &flipReader{r: resp.Body}
		}
		return nil
	}
	srv := newLoopbackServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.clock++
		i := len(p.requests)
		p.requests = append(p.requests, proxyRequest{Method: r.Method, Path: r.URL.Path, Range: r.Header.Get("Range"), Digest: r.URL.Query().Get("digest"), Start: p.clock})
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
		p.mu.Lock()
		p.clock++
		p.requests[i].End = p.clock
		p.mu.Unlock()
	}))
	p.Addr = srv
	return p
}

func (p *proxy) log() []proxyRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]proxyRequest(nil), p.requests...)
}

// gets returns the GET requests of the blob dgst so far.
func (p *proxy) gets(dgst digest.Digest) []proxyRequest {
	var out []proxyRequest
	for _, req := range p.log() {
		if req.Method == http.MethodGet && blobDigest(req.Path) == dgst {
			out = append(out, req)
		}
	}
	return out
}

// blobDigest is the digest of a /v2/<name>/blobs/<digest> path, or "".
func blobDigest(path string) digest.Digest {
	i := strings.LastIndex(path, "/blobs/")
	if i < 0 {
		return ""
	}
	return digest.Digest(path[i+len("/blobs/"):])
}

// cutReader fails after n bytes, as a dropped connection does; with
// stall set, it first sends nothing more until stall is closed (the client
// went away), as a registry that stops mid-blob does.
type cutReader struct {
	r     io.ReadCloser
	n     int64
	stall <-chan struct{}
}

func (c *cutReader) Read(b []byte) (int, error) {
	if c.n <= 0 {
		if c.stall != nil {
			<-c.stall
		}
		return 0, errors.New("connection cut by the test proxy")
	}
	if int64(len(b)) > c.n {
		b = b[:c.n]
	}
	n, err := c.r.Read(b)
	c.n -= int64(n)
	return n, err
}

func (c *cutReader) Close() error { return c.r.Close() }

// flipReader flips the first byte it passes.
type flipReader struct {
	r       io.ReadCloser
	flipped bool
}

func (f *flipReader) Read(b []byte) (int, error) {
	n, err := f.r.Read(b)
	if n > 0 && !f.flipped {
		b[0] ^= 0xff
		f.flipped = true
	}
	return n, err
}

func (f *flipReader) Close() error { return f.r.Close() }
