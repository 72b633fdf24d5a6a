package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/internal/testimage"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/mount"
)

// layerProxy serves a registry through a reverse proxy on a loopback port
// that acts on the GETs of one blob: the first is held back before its
// last hold bytes until release is closed (or 30 s), or cut after cut
// bytes; later ones lose their Range header, as from a registry that
// ignores it (it sends the whole blob again).
type layerProxy struct {
	addr        string
	release     chan struct{}
	releaseOnce sync.Once

	mu     sync.Mutex
	ranges []string // the Range header of each GET of the blob, as asked
}

func newLayerProxy(t *testing.T, target string, blob ocispec.Descriptor, hold, cut int64) *layerProxy {
	t.Helper()
	u, err := url.Parse("http://" + target)
	if err != nil {
		t.Fatal(err)
	}
	p := &layerProxy{release: make(chan struct{})}
	t.Cleanup(p.Release)
	rp := httputil.NewSingleHostReverseProxy(u)
	direct := rp.Director
	rp.Director = func(r *http.Request) {
		direct(r)
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+blob.Digest.String()) {
			return
		}
		p.mu.Lock()
		p.ranges = append(p.ranges, r.Header.Get("Range"))
		n := len(p.ranges)
		p.mu.Unlock()
		if n > 1 {
			r.Header.Del("Range")
		}
	}
	rp.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Method != http.MethodGet || !strings.HasSuffix(resp.Request.URL.Path, "/blobs/"+blob.Digest.String()) {
			return nil
		}
		p.mu.Lock()
		first := len(p.ranges) == 1
		p.mu.Unlock()
		if first {
			resp.Body = &heldBody{ReadCloser: resp.Body, left: blob.Size, hold: hold, cut: cut, release: p.release}
		}
		return nil
	}
	p.addr = serveLoopback(t, rp)
	return p
}

// Release lets a held-back GET go on.
func (p *layerProxy) Release() { p.releaseOnce.Do(func() { close(p.release) }) }

func (p *layerProxy) gets() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.ranges...)
}

// heldBody stops before its last hold bytes until release is closed, or
// fails after cut bytes (0: never).
type heldBody struct {
	io.ReadCloser
	left, hold, cut, sent int64
	release               chan struct{}
}

func (b *heldBody) Read(p []byte) (int, error) {
	if b.cut > 0 {
		if b.sent >= b.cut {
			return 0, errors.New("connection cut by the test's proxy")
		}
		p = p[:min(int64(len(p)), b.cut-b.sent)]
	}
	if b.hold > 0 && b.left <= b.hold {
		select {
		case <-b.release:
		case <-time.After(30 * time.Second):
		}
		b.hold = 0
	} else if b.hold > 0 {
		p = p[:min(int64(len(p)), b.left-b.hold)]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	b.sent += int64(n)
	return n, err
}

// bigLayerImage pushes to the registry at addr an image whose bottom
// layer is one file "big" of size random bytes, and returns the image and
// the file's bytes.
func bigLayerImage(t *testing.T, addr, name string, size int) (*testimage.Image, []byte) {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	img, err := testimage.Build(ocispec.ImageConfig{}, []testimage.Entry{{Name: "big", Data: data}}, []testimage.Entry{testimage.File("small", "small\n")})
	if err != nil {
		t.Fatal(err)
	}
	pushTestimage(t, addr+"/"+name, img)
	return img, data
}

// requireUnpacked views the image's top snapshot and compares its file
// big with data.
func requireUnpacked(t *testing.T, ctx context.Context, c *client.Client, img *client.Image, data []byte) {
	t.Helper()
	chainID, err := img.ChainID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sn := c.SnapshotService("overlayfs")
	ms, err := sn.View(ctx, "check-"+chainID[len(chainID)-8:], chainID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sn.Remove(context.WithoutCancel(ctx), "check-"+chainID[len(chainID)-8:]) })
	dir := t.TempDir()
	if err := mount.All(ms, dir); err != nil {
		t.Fatal(err)
	}
	defer mount.UnmountAll(dir, 0)
	got, err := os.ReadFile(filepath.Join(dir, "big"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("big in the unpacked image: %d bytes (%v), want the layer's %d (digest %s, got %s)", len(got), err, len(data), digest.FromBytes(data), digest.FromBytes(got))
	}
}

// TestPullUnpackStreams: a pull with unpack applies a layer while it
// arrives. While the registry holds back the last 64 KiB of the bottom
// layer, the layer's file is already in the unpack's snapshot, most of
// it; once the rest comes, the image is unpacked whole.
func TestPullUnpackStreams(t *testing.T) {
	reg := testutil.StartRegistry(t, testutil.RegistryConfig{})
	img, data := bigLayerImage(t, reg.Addr, "test/stream:1", 8<<20)
	proxy := newLayerProxy(t, reg.Addr, img.Layers[0], 64<<10, 0)
	d := newDaemon(t)
	c := d.client(t, "stream")
	ctx := d.nsContext("stream")
	type result struct {
		img *client.Image
		err error
	}
	done := make(chan result, 1)
	go func() {
		pulled, err := c.Pull(ctx, proxy.addr+"/test/stream:1", client.WithPlainHTTP(), client.WithPullUnpack, client.WithPullSnapshotter("overlayfs"))
		done <- result{pulled, err}
	}()
	// The snapshot being applied is the only one with a file named big.
	snapshots := filepath.Join(d.root, "lib")
	var seen int64
	eventually(t, 30*time.Second, "most of the layer's file in the snapshot being applied while the registry holds back its end", func() bool {
		filepath.WalkDir(snapshots, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.Name() == "big" && !e.IsDir() {
				if fi, err := e.Info(); err == nil {
					seen = max(seen, fi.Size())
				}
			}
			return nil
		})
		return seen >= 4<<20
	})
	proxy.Release()
	var r result
	select {
	case r = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the pull did not end once the registry sent the rest")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	requireUnpacked(t, ctx, c, r.img, data)
}

// TestPullUnpackRefetched: the registry drops the connection in the
// middle of the bottom layer, then ignores the resume's Range and sends
// the whole blob again: the pull starts the blob over, and the unpack,
// which had applied some of it already, applies it again: the image is
// unpacked whole, from the blob's bytes.
func TestPullUnpackRefetched(t *testing.T) {
	reg := testutil.StartRegistry(t, testutil.RegistryConfig{})
	img, data := bigLayerImage(t, reg.Addr, "test/refetch:1", 8<<20)
	proxy := newLayerProxy(t, reg.Addr, img.Layers[0], 0, 3<<20)
	d := newDaemon(t)
	c := d.client(t, "refetch")
	ctx := d.nsContext("refetch")
	pulled, err := c.Pull(ctx, proxy.addr+"/test/refetch:1", client.WithPlainHTTP(), client.WithPullUnpack, client.WithPullSnapshotter("overlayfs"))
	if err != nil {
		t.Fatal(err)
	}
	gets := proxy.gets()
	if len(gets) != 2 || gets[0] != "" || gets[1] == "" {
		t.Fatalf("GETs of the layer with Range %q, want a whole one, then a resume", gets)
	}
	requireUnpacked(t, ctx, c, pulled, data)
}
