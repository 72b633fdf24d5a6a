package unpack_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/diff"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/mount"
	"github.com/berthrt/berth/snapshots"
	"github.com/berthrt/berth/storage/snapshots/overlay"
	"github.com/berthrt/berth/unpack"
)

// recorder is a snapshotter that records the keys it prepares.
type recorder struct {
	snapshots.Snapshotter
	mu   sync.Mutex
	keys []string // guarded by mu
}

func (r *recorder) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	r.mu.Lock()
	r.keys = append(r.keys, key)
	r.mu.Unlock()
	return r.Snapshotter.Prepare(ctx, key, parent, opts...)
}

// stagedKeys counts the staging snapshots prepared.
func (r *recorder) stagedKeys() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, k := range r.keys {
		if strings.Contains(k, "-stage-") {
			n++
		}
	}
	return n
}

type overlayEnv struct {
	env
	sn *recorder // env.sn, recording
}

func newOverlayEnv(t testing.TB) overlayEnv {
	t.Helper()
	_, err := os.Stat("/sys/module/overlay")
	testutil.Require(t, err == nil, "overlayfs is not available (modprobe overlay)")
	e := openEnv(t, overlay.Name, overlay.New)
	r := &recorder{Snapshotter: e.sn}
	e.sn = r
	return overlayEnv{env: e, sn: r}
}

// image writes an image of layers, each a list of tar headers (a file's
// content is "content of NAME"), into the content store.
func (e overlayEnv) image(t testing.TB, layers ...[]tar.Header) unpack.Image {
	t.Helper()
	put := func(mediaType string, data []byte) ocispec.Descriptor {
		d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
		if err := content.WriteBlob(e.ctx, e.content, "t-"+d.Digest.Encoded(), bytes.NewReader(data), d); err != nil && !errdefs.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		return d
	}
	cfg := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}, RootFS: ocispec.RootFS{Type: "layers"}}
	var descs []ocispec.Descriptor
	for _, hdrs := range layers {
		var raw, gz bytes.Buffer
		tw := tar.NewWriter(&raw)
		for _, h := range hdrs {
			body := ""
			if h.Typeflag == tar.TypeReg {
				body = "content of " + h.Name
				h.Size = int64(len(body))
			}
			if h.ModTime.IsZero() {
				h.ModTime = time.Unix(1700000000, 0)
			}
			if err := tw.WriteHeader(&h); err != nil {
				t.Fatal(err)
			}
			tw.Write([]byte(body))
		}
		tw.Close()
		zw := gzip.NewWriter(&gz)
		zw.Write(raw.Bytes())
		zw.Close()
		descs = append(descs, put(ocispec.MediaTypeImageLayerGzip, gz.Bytes()))
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, digest.FromBytes(raw.Bytes()))
	}
	data, _ := json.Marshal(cfg)
	cd := put(ocispec.MediaTypeImageConfig, data)
	data, _ = json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cd, Layers: descs})
	img, err := unpack.Resolve(e.ctx, e.content, put(ocispec.MediaTypeImageManifest, data), nil)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// merged describes every entry of the view of top: type, mode, owner,
// mtime (folders too), content or target.
func (e overlayEnv) merged(t *testing.T, top string) map[string]string {
	t.Helper()
	dir := e.mountView(t, "view-"+top[len(top)-8:], top)
	out := map[string]string{}
	filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		var st unix.Stat_t
		unix.Lstat(p, &st)
		mtime := fmt.Sprint(st.Mtim.Sec)
		if st.Mtim.Sec > 1700000000 {
			mtime = "now" // a folder changed by the unpack itself
		}
		d := fmt.Sprintf("mode=%o uid=%d gid=%d mtime=%s", st.Mode, st.Uid, st.Gid, mtime)
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			data, _ := os.ReadFile(p)
			d += fmt.Sprintf(" nlink=%d %q", st.Nlink, data)
		} else if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			l, _ := os.Readlink(p)
			d += " -> " + l
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = d
		return nil
	})
	return out
}

// TestUnpackAhead unpacks one image into overlayfs twice, one layer after
// the other and with layers applied ahead, and compares what containers
// would see: the same files with the same metadata, folders that a layer
// only implies taking theirs from the layers below, whiteouts and opaque
// folders honoured, and a hardlink to a file of a lower layer (which
// cannot be staged) applied in place.
func TestUnpackAhead(t *testing.T) {
	dirh := func(name string, mode int64, uid, gid int, mtime int64) tar.Header {
		return tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, Uid: uid, Gid: gid, ModTime: time.Unix(mtime, 0)}
	}
	reg := func(name string) tar.Header { return tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644} }
	layers := [][]tar.Header{
		{dirh("usr/", 0o755, 0, 0, 1600000000), dirh("usr/local/", 0o750, 5, 6, 1600000001), reg("usr/local/a"),
			dirh("opq/", 0o755, 0, 0, 1600000002), reg("opq/old"), reg("gone"), reg("target")},
		{reg("usr/local/bin/x"), reg(".wh.gone"), reg("opq/.wh..wh..opq"), reg("opq/new"), dirh("d1/", 0o711, 7, 7, 1600000003), reg("d1/f")},
		{{Typeflag: tar.TypeLink, Name: "hl", Linkname: "target"}, reg("usr/y")},
		{reg("z/deep/f"), {Typeflag: tar.TypeSymlink, Name: "s", Linkname: "usr", Mode: 0o777}, reg("usr/local/c"),
			dirh("t/", 0o700, 3, 3, 1600000009), reg("t/f")},
	}
	var views []map[string]string
	for _, ahead := range []int{0, 4} {
		e := newOverlayEnv(t)
		img := e.image(t, layers...)
		top, err := unpack.Unpack(e.ctx, img, unpack.Options{Content: e.content, Snapshotter: e.sn, SnapshotterName: overlay.Name, Applier: diff.NewApplier(t.TempDir()), Leases: e.leases, Ahead: ahead})
		if err != nil {
			t.Fatalf("ahead %d: %v", ahead, err)
		}
		if n := e.sn.stagedKeys(); (ahead == 0) != (n == 0) {
			t.Errorf("ahead %d: %d layers staged", ahead, n)
		}
		views = append(views, e.merged(t, top))
		var left []string
		e.sn.Walk(e.ctx, func(_ context.Context, i snapshots.Info) error {
			if i.Kind == snapshots.KindActive {
				left = append(left, i.Name)
			}
			return nil
		})
		if len(left) > 0 {
			t.Errorf("ahead %d: active snapshots left: %v", ahead, left)
		}
	}
	for name, want := range views[0] {
		if got := views[1][name]; got != want {
			t.Errorf("%s: ahead %q, in order %q", name, got, want)
		}
	}
	for name, got := range views[1] {
		if _, ok := views[0][name]; !ok {
			t.Errorf("%s: ahead only: %q", name, got)
		}
	}
	for _, name := range []string{"gone", "opq/old"} {
		if _, ok := views[0][name]; ok {
			t.Errorf("%s is visible", name)
		}
	}
	if !strings.Contains(views[0]["usr/local"], "uid=5 gid=6") || !strings.Contains(views[0]["hl"], "nlink=2") ||
		!strings.Contains(views[0]["t"], "mtime=1600000009") || views[0]["z/deep/f"] == "" {
		t.Errorf("usr/local %q, hl %q, t %q, z/deep/f %q", views[0]["usr/local"], views[0]["hl"], views[0]["t"], views[0]["z/deep/f"])
	}
}

// failingCommit is a snapshotter whose Commit of one name fails once.
type failingCommit struct {
	*recorder
	name   string
	failed bool
}

func (f *failingCommit) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	if name == f.name && !f.failed {
		f.failed = true
		return fmt.Errorf("commit %s: injected failure: %w", name, errdefs.ErrUnavailable)
	}
	return f.recorder.Commit(ctx, name, key, opts...)
}

// arrivingStore settles every blob as unverified: an apply that fails is
// applied again, as with a pull's store.
type arrivingStore struct{ unpack.Store }

func (arrivingStore) Settle(context.Context, ocispec.Descriptor) (bool, error) { return true, nil }

// TestUnpackAheadAppliedAgain: a staged layer adopted into a snapshot
// whose commit then fails is applied again in place (its staged files went
// with that snapshot), not adopted a second time from an empty folder.
func TestUnpackAheadAppliedAgain(t *testing.T) {
	reg := func(name string) tar.Header { return tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644} }
	e := newOverlayEnv(t)
	img := e.image(t, []tar.Header{reg("a")}, []tar.Header{reg("b")}, []tar.Header{reg("c")})
	chain := identity.ChainID(img.DiffIDs()).String()
	sn := &failingCommit{recorder: e.sn, name: chain}
	top, err := unpack.Unpack(e.ctx, img, unpack.Options{Content: arrivingStore{e.content}, Snapshotter: sn, SnapshotterName: overlay.Name, Applier: diff.NewApplier(t.TempDir()), Leases: e.leases, Ahead: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !sn.failed {
		t.Fatal("the top layer's commit was not tried")
	}
	if n := e.sn.stagedKeys(); n == 0 {
		t.Fatal("no layer was staged")
	}
	view := e.merged(t, top)
	for _, name := range []string{"a", "b", "c"} {
		if !strings.Contains(view[name], "content of "+name) {
			t.Errorf("%s: %q, want its content", name, view[name])
		}
	}
}
