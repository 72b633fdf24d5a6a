package diff_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/diff"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/mount"
	"github.com/berthrt/berth/storage/content/local"
)

// layerTar is a small layer: a folder, files, a symlink, a hardlink.
func layerTar(t testing.TB) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	mt := time.Unix(1700000000, 0)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "sub/", Mode: 0o755, ModTime: mt})
	for i := range 20 {
		body := strings.Repeat(fmt.Sprint(i), 1000*i)
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("sub/f%d", i), Mode: 0o644, Size: int64(len(body)), ModTime: mt})
		tw.Write([]byte(body))
	}
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "link", Linkname: "sub/f1", ModTime: mt})
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeLink, Name: "hard", Linkname: "sub/f2", ModTime: mt})
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func compress(t testing.TB, mediaType string, raw []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	switch mediaType {
	case ocispec.MediaTypeImageLayerGzip:
		w := gzip.NewWriter(&b)
		w.Write(raw)
		w.Close()
	case ocispec.MediaTypeImageLayerZstd:
		w, _ := zstd.NewWriter(&b)
		w.Write(raw)
		w.Close()
	default:
		b.Write(raw)
	}
	return b.Bytes()
}

// memProvider serves blobs from memory.
type memProvider map[digest.Digest][]byte

func (m memProvider) add(mediaType string, data []byte) ocispec.Descriptor {
	d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
	m[d.Digest] = data
	return d
}

func (m memProvider) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	data, ok := m[desc.Digest]
	if !ok {
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, errdefs.ErrNotFound)
	}
	return readerAt{bytes.NewReader(data)}, nil
}

type readerAt struct{ *bytes.Reader }

func (readerAt) Close() error { return nil }

func bind(dir string) []mount.Mount {
	return []mount.Mount{{Type: "bind", Source: dir, Options: []string{"rbind", "rw"}}}
}

// noTempMounts returns a folder for temporary mounts and checks that Apply
// and Compare left nothing in it.
func noTempMounts(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpmounts")
	t.Cleanup(func() {
		if left, _ := os.ReadDir(dir); len(left) > 0 {
			t.Errorf("left behind in %s: %v", dir, left)
		}
	})
	return dir
}

func TestApplyRoundTrips(t *testing.T) {
	testutil.RequireRoot(t)
	raw := layerTar(t)
	want := digest.FromBytes(raw)
	for _, mt := range []string{ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerZstd} {
		for _, target := range []string{"bind", "overlay", "temp mount"} {
			t.Run(mt+"/"+target, func(t *testing.T) {
				tmp := noTempMounts(t)
				p := memProvider{}
				desc := p.add(mt, compress(t, mt, raw))
				base := t.TempDir()
				dirs := map[string]string{}
				for _, d := range []string{"a", "b", "lower", "upper", "work", "merged"} {
					dirs[d] = filepath.Join(base, d)
					os.Mkdir(dirs[d], 0o755)
				}
				var mounts []mount.Mount
				check := dirs["a"]
				switch target {
				case "bind":
					mounts = bind(dirs["a"])
				case "overlay":
					mounts = []mount.Mount{{Type: "overlay", Source: "overlay", Options: []string{
						"lowerdir=" + dirs["lower"], "upperdir=" + dirs["upper"], "workdir=" + dirs["work"]}}}
					check = dirs["upper"]
				case "temp mount":
					// Two mounts: mounted in a temporary folder.
					mounts = append(bind(dirs["a"]), mount.Mount{Type: "bind", Source: dirs["b"], Target: "extra", Options: []string{"rbind"}})
				}
				got, err := diff.NewApplier(tmp).Apply(context.Background(), desc, mounts, p)
				if err != nil {
					t.Fatal(err)
				}
				if got.Digest != want || got.Size != int64(len(raw)) || got.MediaType != ocispec.MediaTypeImageLayer {
					t.Errorf("got %+v, want diff ID %s size %d", got, want, len(raw))
				}
				if data, err := os.ReadFile(filepath.Join(check, "sub/f3")); err != nil || len(data) != 3000 {
					t.Errorf("sub/f3: %d bytes, %v", len(data), err)
				}
				if a, b := statIno(t, filepath.Join(check, "hard")), statIno(t, filepath.Join(check, "sub/f2")); a != b {
					t.Error("hardlink not kept")
				}
			})
		}
	}
}

func statIno(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func TestApplyErrors(t *testing.T) {
	testutil.RequireRoot(t)
	tmp := noTempMounts(t)
	p := memProvider{}
	ctx := context.Background()
	if _, err := diff.NewApplier(tmp).Apply(ctx, p.add("application/vnd.oci.image.layer.v1.tar+lz4", []byte("x")), bind(t.TempDir()), p); !errdefs.IsNotImplemented(err) {
		t.Errorf("unknown media type: %v", err)
	}
	gz := compress(t, ocispec.MediaTypeImageLayerGzip, layerTar(t))
	gz[len(gz)-5] ^= 0xff // the gzip trailer's CRC
	dir := t.TempDir()
	mounts := append(bind(dir), mount.Mount{Type: "bind", Source: t.TempDir(), Target: "sub", Options: []string{"rbind"}})
	if _, err := diff.NewApplier(tmp).Apply(ctx, p.add(ocispec.MediaTypeImageLayerGzip, gz), mounts, p); err == nil {
		t.Error("a corrupt gzip stream applied")
	}
	hostile := []byte{}
	{
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "../escape"})
		tw.Close()
		hostile = b.Bytes()
	}
	if _, err := diff.NewApplier(tmp).Apply(ctx, p.add(ocispec.MediaTypeImageLayer, hostile), mounts, p); !errdefs.IsInvalidArgument(err) {
		t.Errorf("hostile layer: %v", err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "escape")); err == nil {
		t.Error("escaped")
	}
}

// TestCompareThenApply: a container's changes made through a real overlay
// mount, compared into the content store and applied onto a copy of the
// lower layer, give the merged view.
func TestCompareThenApply(t *testing.T) {
	testutil.RequireRoot(t)
	tmp := noTempMounts(t)
	ctx := context.Background()
	store, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p := memProvider{}
	base := t.TempDir()
	dirs := map[string]string{}
	for _, d := range []string{"lower", "copy", "upper", "work", "merged"} {
		dirs[d] = filepath.Join(base, d)
		os.Mkdir(dirs[d], 0o755)
	}
	layer := p.add(ocispec.MediaTypeImageLayer, layerTar(t))
	for _, d := range []string{"lower", "copy"} {
		if _, err := diff.NewApplier(tmp).Apply(ctx, layer, bind(dirs[d]), p); err != nil {
			t.Fatal(err)
		}
	}
	// index=on makes overlayfs refuse a second mount of an upper folder in
	// use: Compare must read the live container's upper folder as a lower.
	ovl := []mount.Mount{{Type: "overlay", Source: "overlay", Options: []string{"index=on", "lowerdir=" + dirs["lower"], "upperdir=" + dirs["upper"], "workdir=" + dirs["work"]}}}
	if err := ovl[0].Mount(dirs["merged"]); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mount.UnmountAll(dirs["merged"], 0) })
	m := dirs["merged"]
	os.Remove(filepath.Join(m, "sub/f1"))
	os.WriteFile(filepath.Join(m, "sub/f4"), []byte("rewritten"), 0o600)
	os.MkdirAll(filepath.Join(m, "new/dir"), 0o700)
	os.WriteFile(filepath.Join(m, "new/dir/file"), []byte("new"), 0o644)
	os.RemoveAll(filepath.Join(m, "sub"))
	os.Mkdir(filepath.Join(m, "sub"), 0o711)
	os.WriteFile(filepath.Join(m, "sub/only"), []byte("only"), 0o644)

	desc, err := diff.NewComparer(store, tmp).Compare(ctx, bind(dirs["lower"]), ovl, diff.WithLabels(map[string]string{"x": "y"}))
	if err != nil {
		t.Fatal(err)
	}
	if desc.MediaType != ocispec.MediaTypeImageLayerGzip {
		t.Errorf("media type %s", desc.MediaType)
	}
	info, err := store.Info(ctx, desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	got, err := diff.NewApplier(tmp).Apply(ctx, desc, bind(dirs["copy"]), store)
	if err != nil {
		t.Fatal(err)
	}
	if info.Labels[diff.LabelUncompressed] != got.Digest.String() || info.Labels["x"] != "y" {
		t.Errorf("labels %v, diff ID %s", info.Labels, got.Digest)
	}
	want, have := listTree(t, m), listTree(t, dirs["copy"])
	if !slices.Equal(want, have) {
		t.Errorf("applied copy\n%v\nmerged\n%v", have, want)
	}
}

func listTree(t *testing.T, root string) []string {
	var out []string
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		s := fmt.Sprintf("%s %v %d", rel, fi.Mode(), fi.Size())
		if fi.Mode().IsRegular() {
			s += fmt.Sprint(" ", fi.ModTime().Unix())
		}
		out = append(out, s)
		return nil
	})
	return out
}

// BenchmarkApplyGzip applies a 64 MiB layer of 4–60 KiB files (half
// random bytes, half text), gzip'd, onto a folder.
func BenchmarkApplyGzip(b *testing.B) {
	testutil.RequireRoot(b)
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	total, i := 0, 0
	rnd := make([]byte, 64<<10)
	for total < 64<<20 {
		n := 4<<10 + (i*7919)%(56<<10)
		body := make([]byte, n)
		rand.Read(rnd[:n/2])
		copy(body, rnd[:n/2])
		copy(body[n/2:], bytes.Repeat([]byte("layer text "), n/2/11+1))
		if i%100 == 0 {
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: fmt.Sprintf("d%d/", i/100), Mode: 0o755})
		}
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("d%d/f%d", i/100, i), Mode: 0o644, Size: int64(n)})
		tw.Write(body)
		total += n
		i++
	}
	tw.Close()
	p := memProvider{}
	desc := p.add(ocispec.MediaTypeImageLayerGzip, compress(b, ocispec.MediaTypeImageLayerGzip, raw.Bytes()))
	b.SetBytes(int64(raw.Len()))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		dir, err := os.MkdirTemp(b.TempDir(), "apply")
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := diff.NewApplier(b.TempDir()).Apply(context.Background(), desc, bind(dir), p); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(dir)
		b.StartTimer()
	}
	b.ReportMetric(float64(raw.Len())/(1<<20)/(b.Elapsed().Seconds()/float64(b.N)), "MiB/s")
	b.Logf("%d files, %d MiB uncompressed, %d MiB gzip'd", i, raw.Len()>>20, desc.Size>>20)
}
