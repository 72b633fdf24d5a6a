package archive_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/distribution"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/gc"
	"github.com/berthrt/berth/images"
	"github.com/berthrt/berth/images/archive"
	"github.com/berthrt/berth/leases"
)

// readTar returns the files of a tar by name, in order.
func readTar(t *testing.T, data []byte) ([]string, map[string][]byte) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	var names []string
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names, files
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Typeflag == tar.TypeReg {
			files[h.Name], _ = io.ReadAll(tr)
		}
	}
}

func blobName(d digest.Digest) string { return "blobs/sha256/" + d.Encoded() }

func TestExportImportRoundTrip(t *testing.T) {
	src := newEnv(t)
	im := buildImage(t, "linux/amd64")
	img := src.put(t, im, "docker.io/library/busybox:1")

	var reports []distribution.Progress
	var buf bytes.Buffer
	if err := archive.Export(src.ctx, src.store, &buf, archive.WithImages(img), archive.WithProgress(func(p distribution.Progress) { reports = append(reports, p) })); err != nil {
		t.Fatal(err)
	}
	names, files := readTar(t, buf.Bytes())
	if names[0] != "oci-layout" || names[len(names)-1] != "index.json" {
		t.Errorf("entries %v: want oci-layout first and index.json last", names)
	}
	for d, data := range im.blobs {
		if !bytes.Equal(files[blobName(d)], data) {
			t.Errorf("blob %s missing or different in the archive", d)
		}
	}
	if len(files) != len(im.blobs)+2 {
		t.Errorf("archive has %d files, want %d blobs and 2", len(files), len(im.blobs))
	}
	var idx ocispec.Index
	if err := json.Unmarshal(files["index.json"], &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != im.root.Digest ||
		idx.Manifests[0].Annotations[images.AnnotationImageName] != img.Name || idx.Manifests[0].Annotations[ocispec.AnnotationRefName] != "1" {
		t.Errorf("index.json = %s", files["index.json"])
	}
	if done := countStatus(reports, distribution.StatusDone); done != len(im.blobs) {
		t.Errorf("%d done reports, want %d", done, len(im.blobs))
	}

	dst := newEnv(t)
	reports = nil
	res, err := archive.Import(dst.ctx, dst.store, dst.images, bytes.NewReader(buf.Bytes()), archive.WithProgress(func(p distribution.Progress) { reports = append(reports, p) }))
	if err != nil {
		t.Fatal(err)
	}
	if res.Format != archive.FormatOCI || len(res.Images) != 1 || res.Images[0].Name != img.Name || res.Images[0].Target.Digest != im.root.Digest {
		t.Fatalf("result = %+v", res)
	}
	if done := countStatus(reports, distribution.StatusDone); done != len(im.blobs) {
		t.Errorf("%d done reports, want %d", done, len(im.blobs))
	}
	got, err := dst.images.Get(dst.ctx, img.Name)
	if err != nil || got.Target.Digest != im.root.Digest {
		t.Fatalf("image = %+v, %v", got, err)
	}
	check, err := images.Check(dst.ctx, dst.store, got.Target, nil)
	if err != nil || check.Availability != images.Complete || check.Required != 3 {
		t.Errorf("check = %v %+v, %v", check, check, err)
	}
	info, err := dst.store.Info(dst.ctx, im.root.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if info.Labels[gc.LabelRefContent+".config"] != im.configs["linux/amd64"].Digest.String() ||
		info.Labels[gc.LabelRefContent+".l.0"] != im.layers["linux/amd64"].Digest.String() {
		t.Errorf("manifest labels = %v", info.Labels)
	}

	// Again: every blob exists now, the image is updated, not duplicated.
	reports = nil
	if _, err := archive.Import(dst.ctx, dst.store, dst.images, bytes.NewReader(buf.Bytes()), archive.WithProgress(func(p distribution.Progress) { reports = append(reports, p) })); err != nil {
		t.Fatal(err)
	}
	if n := countStatus(reports, distribution.StatusExists); n != len(im.blobs) {
		t.Errorf("second import: %d exists reports, want %d", n, len(im.blobs))
	}

	// The same archive exported again is byte for byte the same.
	var again bytes.Buffer
	if err := archive.Export(dst.ctx, dst.store, &again, archive.WithImages(got)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), buf.Bytes()) {
		t.Error("export of the imported image differs from the first export")
	}
}

func countStatus(reports []distribution.Progress, s distribution.Status) int {
	n := 0
	for _, p := range reports {
		if p.Status == s {
			n++
		}
	}
	return n
}

func TestImportGzip(t *testing.T) {
	e := newEnv(t)
	im := buildImage(t, "linux/amd64")
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(tarOf(t, layoutFiles(t, im, "example.com/app:v1")...))
	_ = zw.Close()
	res, err := archive.Import(e.ctx, e.store, e.images, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Images) != 1 || res.Images[0].Name != "example.com/app:v1" {
		t.Errorf("images = %+v", res.Images)
	}
}

func TestImportNames(t *testing.T) {
	im := buildImage(t, "linux/amd64")
	tests := []struct {
		name     string
		annot    map[string]string
		opts     []archive.Opt
		want     []string
		wantRoot int
	}{
		{name: "containerd name as is", annot: map[string]string{images.AnnotationImageName: "example.com/a:1", ocispec.AnnotationRefName: "1"}, want: []string{"example.com/a:1"}},
		{name: "full ref normalised", annot: map[string]string{ocispec.AnnotationRefName: "busybox:1"}, want: []string{"docker.io/library/busybox:1"}},
		{name: "bare tag without prefix", annot: map[string]string{ocispec.AnnotationRefName: "latest"}},
		{name: "bare tag with prefix", annot: map[string]string{ocispec.AnnotationRefName: "v2"}, opts: []archive.Opt{archive.WithNamePrefix("example.com/app")}, want: []string{"example.com/app:v2"}},
		{name: "other prefix dropped", annot: map[string]string{ocispec.AnnotationRefName: "example.com/other:v2"}, opts: []archive.Opt{archive.WithNamePrefix("example.com/app")}},
		{name: "index name", annot: map[string]string{ocispec.AnnotationRefName: "x.io/a:1"}, opts: []archive.Opt{archive.WithIndexName("x.io/all:1")}, want: []string{"x.io/a:1", "x.io/all:1"}},
		{name: "no annotations", annot: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			files := layoutFiles(t, im, "")
			root := im.root
			root.Annotations = tt.annot
			files[len(files)-1].data = mustJSON(t, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, Manifests: []ocispec.Descriptor{root}})
			res, err := archive.Import(e.ctx, e.store, e.images, bytes.NewReader(tarOf(t, files...)), tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, img := range res.Images {
				got = append(got, img.Name)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("images %v, want %v", got, tt.want)
			}
			if len(res.Roots) != 1 || res.Roots[0].Digest != im.root.Digest {
				t.Errorf("roots = %v", res.Roots)
			}
		})
	}
}

func TestImportHostile(t *testing.T) {
	im := buildImage(t, "linux/amd64")
	good := layoutFiles(t, im, "example.com/a:1")
	layer := im.layers["linux/amd64"]
	other := digest.FromString("other")

	// A manifest whose layer descriptor has the wrong size.
	badSize := buildImage(t, "linux/amd64")
	var m ocispec.Manifest
	_ = json.Unmarshal(badSize.blobs[badSize.root.Digest], &m)
	delete(badSize.blobs, badSize.root.Digest)
	m.Layers[0].Size++
	badSize.root = badSize.add(ocispec.MediaTypeImageManifest, mustJSON(t, m))

	// A manifest whose config is not JSON.
	badConfig := buildImage(t, "linux/amd64")
	var mc ocispec.Manifest
	_ = json.Unmarshal(badConfig.blobs[badConfig.root.Digest], &mc)
	delete(badConfig.blobs, badConfig.root.Digest)
	delete(badConfig.blobs, mc.Config.Digest)
	mc.Config = badConfig.add(mc.Config.MediaType, []byte("not json"))
	badConfig.root = badConfig.add(ocispec.MediaTypeImageManifest, mustJSON(t, mc))

	reg := func(name string, data []byte) file { return file{name: name, data: data} }
	hdr := func(h tar.Header) file { return file{hdr: &h} }
	tests := []struct {
		name  string
		files []file
		raw   []byte // instead of files
		class error
		want  string // in the error
	}{
		{name: "parent path", files: append(slices.Clone(good), reg("../evil", []byte("x"))), class: errdefs.ErrInvalidArgument, want: `"../evil"`},
		{name: "absolute path", files: append(slices.Clone(good), reg("/etc/evil", []byte("x"))), class: errdefs.ErrInvalidArgument, want: `"/etc/evil"`},
		{name: "escape through blobs", files: append(slices.Clone(good), reg("blobs/../../evil", []byte("x"))), class: errdefs.ErrInvalidArgument, want: `"blobs/../../evil"`},
		{name: "not a digest under blobs", files: append(slices.Clone(good), reg("blobs/sha256/xyz", []byte("x"))), class: errdefs.ErrInvalidArgument, want: `"blobs/sha256/xyz"`},
		{name: "too deep under blobs", files: append(slices.Clone(good), reg("blobs/sha256/"+other.Encoded()+"/x", []byte("x"))), class: errdefs.ErrInvalidArgument, want: "blobs/sha256/"},
		{name: "long name", files: append(slices.Clone(good), reg(strings.Repeat("a/", 3000)+"x", []byte("x"))), class: errdefs.ErrInvalidArgument, want: "more than 4096"},
		{name: "symlink in blobs", files: append(without(good, blobName(layer.Digest)), hdr(tar.Header{Typeflag: tar.TypeSymlink, Name: blobName(layer.Digest), Linkname: "/etc/passwd"})), class: errdefs.ErrInvalidArgument, want: blobName(layer.Digest)},
		{name: "symlink out", files: append(slices.Clone(good), hdr(tar.Header{Typeflag: tar.TypeSymlink, Name: "a/layer.tar", Linkname: "../../etc/passwd"})), class: errdefs.ErrInvalidArgument, want: `"a/layer.tar"`},
		{name: "absolute symlink", files: append(slices.Clone(good), hdr(tar.Header{Typeflag: tar.TypeSymlink, Name: "a/layer.tar", Linkname: "/etc/passwd"})), class: errdefs.ErrInvalidArgument, want: `"a/layer.tar"`},
		{name: "hard link out", files: append(slices.Clone(good), hdr(tar.Header{Typeflag: tar.TypeLink, Name: "x", Linkname: "../y"})), class: errdefs.ErrInvalidArgument, want: `"x"`},
		{name: "device", files: append(slices.Clone(good), hdr(tar.Header{Typeflag: tar.TypeChar, Name: "dev", Devmajor: 1, Devminor: 3})), class: errdefs.ErrInvalidArgument, want: `"dev"`},
		{name: "sparse", raw: append(withoutEnd(tarOf(t, good...)), sparseFile(t)...), class: errdefs.ErrInvalidArgument, want: "a sparse file"},
		{name: "old GNU sparse", files: append(slices.Clone(good), hdr(tar.Header{Typeflag: tar.TypeGNUSparse, Name: "sparse", Format: tar.FormatGNU})), class: errdefs.ErrInvalidArgument, want: `"sparse"`},
		{name: "fifo", files: append(slices.Clone(good), hdr(tar.Header{Typeflag: tar.TypeFifo, Name: "fifo"})), class: errdefs.ErrInvalidArgument, want: `"fifo"`},
		{name: "duplicate blob", files: append(slices.Clone(good), reg(blobName(layer.Digest), im.blobs[layer.Digest])), class: errdefs.ErrInvalidArgument, want: "duplicate"},
		{name: "duplicate index.json", files: append(slices.Clone(good), reg("./index.json", []byte("{}"))), class: errdefs.ErrInvalidArgument, want: `"./index.json": duplicate`},
		{name: "blob does not match its name", files: append(without(good, blobName(layer.Digest)), reg(blobName(layer.Digest), []byte("not the layer"))), class: errdefs.ErrFailedPrecondition, want: blobName(layer.Digest)},
		{name: "missing blob", files: without(good, blobName(layer.Digest)), class: errdefs.ErrInvalidArgument, want: blobName(layer.Digest) + `": missing`},
		{name: "size mismatch", files: layoutFiles(t, badSize, "a:1"), class: errdefs.ErrInvalidArgument, want: "gives " + layer.Digest.String() + " the size"},
		{name: "config not JSON", files: layoutFiles(t, badConfig, "a:1"), class: errdefs.ErrInvalidArgument, want: "config " + mc.Config.Digest.String() + ": not a JSON object"},
		{name: "no index", files: without(good, "index.json"), class: errdefs.ErrInvalidArgument, want: "neither index.json nor manifest.json"},
		{name: "no oci-layout", files: without(good, "oci-layout"), class: errdefs.ErrInvalidArgument, want: "without oci-layout"},
		{name: "layout version", files: append(without(good, "oci-layout"), reg("oci-layout", []byte(`{"imageLayoutVersion":"9"}`))), class: errdefs.ErrNotImplemented, want: "oci-layout"},
		{name: "index not JSON", files: append(without(good, "index.json"), reg("index.json", []byte("nope"))), class: errdefs.ErrInvalidArgument, want: "index.json"},
		{name: "huge index.json", files: append(without(good, "index.json"), reg("index.json", make([]byte, images.MaxManifestSize+1))), class: errdefs.ErrInvalidArgument, want: `"index.json": 4194305 bytes`},
		{name: "huge PAX header", raw: append(withoutEnd(tarOf(t, good[:2]...)), paxHeader(t, bytes.Repeat([]byte("x"), 2<<20))...), class: errdefs.ErrInvalidArgument, want: "tar header after entry"},
		{name: "truncated", raw: tarOf(t, good...)[:20000], class: errdefs.ErrInvalidArgument, want: "unexpected EOF"},
		{name: "not a tar", raw: []byte("hello, world"), class: errdefs.ErrInvalidArgument, want: "tar header"},
		{name: "bad gzip", raw: []byte{0x1f, 0x8b, 0, 0}, class: errdefs.ErrInvalidArgument, want: "gzip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			raw := tt.raw
			if raw == nil {
				raw = tarOf(t, tt.files...)
			}
			_, err := archive.Import(e.ctx, e.store, e.images, bytes.NewReader(raw))
			if err == nil {
				t.Fatal("import succeeded")
			}
			t.Log(err)
			if !errors.Is(err, tt.class) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q: want %v and %q in it", err, tt.class, tt.want)
			}
			if imgs, _ := e.images.List(e.ctx); len(imgs) != 0 {
				t.Errorf("images after a refused import: %v", imgs)
			}
			if st, _ := e.store.ListStatuses(e.ctx); len(st) != 0 {
				t.Errorf("ingests left: %v", st)
			}
			if tt.class == errdefs.ErrFailedPrecondition && e.has(layer.Digest) {
				t.Error("the mismatching blob was committed")
			}
		})
	}
}

func TestImportDockerArchive(t *testing.T) {
	raw, _ := requireBusybox(t)
	diffID := digest.FromBytes(raw)
	cfg := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}, RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID, diffID}}}
	cfgData := mustJSON(t, cfg)
	cfgName := digest.FromBytes(cfgData).Encoded() + ".json"
	manifest := []map[string]any{{"Config": cfgName, "RepoTags": []string{"busybox:docker", "example.com/b:2"}, "Layers": []string{"aaa/layer.tar", "bbb/layer.tar"}}}
	archiveData := tarOf(t,
		file{hdr: &tar.Header{Typeflag: tar.TypeDir, Name: "aaa/", Mode: 0o755}},
		file{name: "aaa/layer.tar", data: raw},
		file{name: "aaa/json", data: []byte(`{"id":"aaa"}`)},
		file{name: "aaa/VERSION", data: []byte("1.0")},
		// docker save links a layer that two images share.
		file{hdr: &tar.Header{Typeflag: tar.TypeSymlink, Name: "bbb/layer.tar", Linkname: "../aaa/layer.tar"}},
		file{name: cfgName, data: cfgData},
		file{name: "repositories", data: []byte(`{}`)},
		file{name: "manifest.json", data: mustJSON(t, manifest)},
	)
	e := newEnv(t)
	res, err := archive.Import(e.ctx, e.store, e.images, bytes.NewReader(archiveData), archive.WithIndexName("example.com/all:1"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Format != archive.FormatDocker || len(res.Roots) != 2 {
		t.Fatalf("result %+v", res)
	}
	var names []string
	for _, img := range res.Images {
		names = append(names, img.Name)
	}
	if want := []string{"docker.io/library/busybox:docker", "example.com/b:2", "example.com/all:1"}; !slices.Equal(names, want) {
		t.Errorf("images %v, want %v", names, want)
	}
	target := res.Images[0].Target
	if target.MediaType != images.MediaTypeDockerManifest || target.Platform == nil || target.Platform.Architecture != "amd64" {
		t.Errorf("target %+v", target)
	}
	data, err := images.ReadManifest(e.ctx, e.store, target)
	if err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	_ = json.Unmarshal(data, &m)
	if m.Config.MediaType != images.MediaTypeDockerConfig || m.Config.Digest != digest.FromBytes(cfgData) ||
		len(m.Layers) != 2 || m.Layers[0].Digest != diffID || m.Layers[0].MediaType != images.MediaTypeDockerLayer {
		t.Errorf("converted manifest %s", data)
	}
	for _, img := range res.Images {
		if c, err := images.Check(e.ctx, e.store, img.Target, nil); err != nil || c.Availability != images.Complete {
			t.Errorf("check %s: %v, %v", img.Name, c, err)
		}
	}

	// A layer whose digest is not the config's diff_id is refused.
	bad := tarOf(t,
		file{name: "aaa/layer.tar", data: []byte("not the layer")},
		file{name: "bbb/layer.tar", data: raw},
		file{name: cfgName, data: cfgData},
		file{name: "manifest.json", data: mustJSON(t, manifest)},
	)
	if _, err := archive.Import(e.ctx, e.store, e.images, bytes.NewReader(bad)); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "diff_id") {
		t.Errorf("bad layer: %v", err)
	}
	// A dangling link is refused, naming it.
	dangling := tarOf(t,
		file{hdr: &tar.Header{Typeflag: tar.TypeSymlink, Name: "aaa/layer.tar", Linkname: "../ccc/layer.tar"}},
		file{name: "bbb/layer.tar", data: raw},
		file{name: cfgName, data: cfgData},
		file{name: "manifest.json", data: mustJSON(t, manifest)},
	)
	if _, err := archive.Import(e.ctx, e.store, e.images, bytes.NewReader(dangling)); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), `"ccc/layer.tar": missing`) {
		t.Errorf("dangling link: %v", err)
	}
}

func TestPlatforms(t *testing.T) {
	src := newEnv(t)
	im := buildImage(t, "linux/amd64", "linux/arm64", "linux/s390x")
	img := src.put(t, im, "example.com/multi:1")
	amd, arm := im.manifests["linux/amd64"], im.manifests["linux/arm64"]
	s390 := im.manifests["linux/s390x"]

	export := func(opts ...archive.Opt) []byte {
		t.Helper()
		var buf bytes.Buffer
		if err := archive.Export(src.ctx, src.store, &buf, append(opts, archive.WithImages(img))...); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	// By default the host's default platform: the index and amd64.
	_, files := readTar(t, export())
	if files[blobName(im.root.Digest)] == nil || files[blobName(amd.Digest)] == nil || files[blobName(arm.Digest)] != nil || files[blobName(im.layers["linux/arm64"].Digest)] != nil {
		t.Errorf("default export: %v", slices.Sorted(maps.Keys(files)))
	}
	_, files = readTar(t, export(archive.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "arm64"})))
	if files[blobName(arm.Digest)] == nil || files[blobName(amd.Digest)] != nil {
		t.Errorf("arm64 export: %v", slices.Sorted(maps.Keys(files)))
	}
	all := export(archive.WithAllPlatforms())
	_, files = readTar(t, all)
	if len(files) != len(im.blobs)+2 {
		t.Errorf("all-platform export: %d files, want %d", len(files), len(im.blobs)+2)
	}
	var buf bytes.Buffer
	if err := archive.Export(src.ctx, src.store, &buf, archive.WithImages(img), archive.WithPlatform(ocispec.Platform{OS: "windows", Architecture: "amd64"})); !errdefs.IsNotFound(err) || buf.Len() != 0 {
		t.Errorf("export for a platform the index lacks: %v, %d bytes written", err, buf.Len())
	}

	// Import of the whole archive for arm64: the other manifests come in
	// too (the tar is read once), but only arm64 is labelled, so GC keeps
	// just arm64's blobs.
	dst := newEnv(t)
	if _, err := archive.Import(dst.ctx, dst.store, dst.images, bytes.NewReader(all), archive.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "arm64"})); err != nil {
		t.Fatal(err)
	}
	info, _ := dst.store.Info(dst.ctx, im.root.Digest)
	if info.Labels[gc.LabelRefContent+".m.1"] != arm.Digest.String() || info.Labels[gc.LabelRefContent+".m.0"] != "" {
		t.Errorf("index labels %v", info.Labels)
	}
	dst.collect(t)
	if !dst.has(arm.Digest) || !dst.has(im.layers["linux/arm64"].Digest) || dst.has(amd.Digest) || dst.has(im.layers["linux/amd64"].Digest) {
		t.Error("after GC: want arm64's blobs kept and amd64's swept")
	}
	// A second import for another platform adds its labels, keeping
	// arm64's.
	if _, err := archive.Import(dst.ctx, dst.store, dst.images, bytes.NewReader(all), archive.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "s390x"})); err != nil {
		t.Fatal(err)
	}
	info, _ = dst.store.Info(dst.ctx, im.root.Digest)
	if info.Labels[gc.LabelRefContent+".m.1"] != arm.Digest.String() || info.Labels[gc.LabelRefContent+".m.2"] != s390.Digest.String() {
		t.Errorf("index labels after a second platform %v", info.Labels)
	}
	dst.collect(t)
	c, err := images.Check(dst.ctx, dst.store, im.root, nil)
	if err != nil || c.Availability != images.Incomplete || c.Present != 1+2*3 || c.Required != 1+2*3+1 {
		// All platforms: the index, and three manifests of which amd64's
		// is missing, so its config and layer are unknown.
		t.Errorf("check all platforms: %v %+v, %v", c, c, err)
	}

	// The default-platform archive lacks arm64: importing it for all
	// platforms is refused, naming the missing manifest; for amd64 it
	// is complete.
	def := export()
	e := newEnv(t)
	if _, err := archive.Import(e.ctx, e.store, e.images, bytes.NewReader(def), archive.WithAllPlatforms()); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), blobName(arm.Digest)) {
		t.Errorf("all platforms of a one-platform archive: %v", err)
	}
	if _, err := archive.Import(e.ctx, e.store, e.images, bytes.NewReader(def)); err != nil {
		t.Fatal(err)
	}
	if c, err := images.Check(e.ctx, e.store, im.root, images.DefaultMatcher()); err != nil || c.Availability != images.Complete {
		t.Errorf("check default platform: %v, %v", c, err)
	}
}

func TestImportUnderLeaseThenGC(t *testing.T) {
	e := newEnv(t)
	im := buildImage(t, "linux/amd64", "linux/arm64")
	files := layoutFiles(t, im, "example.com/a:1")
	stray := []byte("a file nothing references")
	files = append(files, file{name: "extra/file", data: stray})

	if _, err := e.db.Leases().Create(e.ctx, leases.Lease{ID: "import"}); err != nil {
		t.Fatal(err)
	}
	lctx := leases.WithLease(e.ctx, "import")
	if _, err := archive.Import(lctx, e.store, e.images, bytes.NewReader(tarOf(t, files...))); err != nil {
		t.Fatal(err)
	}
	res, err := e.db.Leases().ListResources(e.ctx, "import")
	if err != nil {
		t.Fatal(err)
	}
	held := map[string]bool{}
	for _, r := range res {
		if r.Type != leases.ResourceContent {
			t.Errorf("lease holds %+v, want blobs only (no ingest left)", r)
		}
		held[r.ID] = true
	}
	for d := range im.blobs {
		if !held[d.String()] {
			t.Errorf("lease lacks %s", d)
		}
	}
	if !held[digest.FromBytes(stray).String()] {
		t.Error("lease lacks the stray file")
	}
	// Under the lease GC keeps everything, the stray file too.
	e.collect(t)
	if !e.has(digest.FromBytes(stray)) || !e.has(im.layers["linux/arm64"].Digest) {
		t.Error("GC under the lease removed content")
	}
	if err := e.db.Leases().Delete(e.ctx, "import"); err != nil {
		t.Fatal(err)
	}
	e.collect(t)
	c, err := images.Check(e.ctx, e.store, im.root, images.DefaultMatcher())
	if err != nil || c.Availability != images.Complete || c.Required != 4 {
		t.Errorf("after GC: %v %+v, %v", c, c, err)
	}
	if e.has(digest.FromBytes(stray)) || e.has(im.manifests["linux/arm64"].Digest) {
		t.Error("GC kept what the image does not reach")
	}

	// A failed import under a lease leaves blobs only the lease holds:
	// GC after the lease removes them.
	if _, err := e.db.Leases().Create(e.ctx, leases.Lease{ID: "failed"}); err != nil {
		t.Fatal(err)
	}
	other := buildImage(t, "linux/s390x")
	bad := without(layoutFiles(t, other, "example.com/b:1"), blobName(other.layers["linux/s390x"].Digest))
	if _, err := archive.Import(leases.WithLease(e.ctx, "failed"), e.store, e.images, bytes.NewReader(tarOf(t, bad...))); err == nil {
		t.Fatal("import without its layer succeeded")
	}
	if err := e.db.Leases().Delete(e.ctx, "failed"); err != nil {
		t.Fatal(err)
	}
	e.collect(t)
	if e.has(other.root.Digest) || e.has(other.configs["linux/s390x"].Digest) {
		t.Error("GC kept the blobs of a failed import")
	}
}

func TestCheck(t *testing.T) {
	e := newEnv(t)
	im := buildImage(t, "linux/amd64")
	if c, err := images.Check(e.ctx, e.store, im.root, nil); err != nil || c.Availability != images.Unavailable || c.String() != "unavailable (0/1)" {
		t.Errorf("empty store: %v, %v", c, err)
	}
	e.put(t, im, "a")
	c, err := images.Check(e.ctx, e.store, im.root, nil)
	total := int64(0)
	for _, b := range im.blobs {
		total += int64(len(b))
	}
	if err != nil || c.String() != "complete (3/3)" || c.Size != total || c.PresentSize != total {
		t.Errorf("complete: %v %+v, %v", c, c, err)
	}
	layer := im.layers["linux/amd64"]
	if err := e.store.Delete(e.ctx, layer.Digest); err != nil {
		t.Fatal(err)
	}
	c, err = images.Check(e.ctx, e.store, im.root, nil)
	if err != nil || c.String() != "incomplete (2/3)" || c.PresentSize != total-layer.Size || len(c.Missing) != 1 || c.Missing[0].Digest != layer.Digest {
		t.Errorf("incomplete: %v %+v, %v", c, c, err)
	}
}

func TestOptionsRefused(t *testing.T) {
	e := newEnv(t)
	var buf bytes.Buffer
	for name, err := range map[string]error{
		"export with an import option": archive.Export(e.ctx, e.store, &buf, archive.WithImages(images.Image{Name: "a", Target: buildImage(t, "linux/amd64").root}), archive.WithIndexName("x")),
		"export of nothing":            archive.Export(e.ctx, e.store, &buf),
		"platform and all":             archive.Export(e.ctx, e.store, &buf, archive.WithAllPlatforms(), archive.WithPlatform(ocispec.Platform{OS: "linux", Architecture: "amd64"})),
	} {
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := archive.Import(e.ctx, e.store, e.images, &buf, archive.WithImages()); !errdefs.IsInvalidArgument(err) {
		t.Errorf("import with an export option: %v", err)
	}
	if buf.Len() != 0 {
		t.Error("a refused export wrote")
	}
}

// paxHeader is a tar that starts with a PAX extended header holding
// records, which archive/tar's writer would not write, and then the
// files.
func paxHeader(t *testing.T, records []byte, files ...file) []byte {
	t.Helper()
	data := tarOf(t, append([]file{{name: "PaxHeaders/x", data: records}}, files...)...)
	h := data[:512]
	h[156] = tar.TypeXHeader
	copy(h[148:156], "        ")
	sum := 0
	for _, b := range h {
		sum += int(b)
	}
	copy(h[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return data
}

// withoutEnd cuts the two zero blocks that end a tar.
func withoutEnd(data []byte) []byte { return data[:len(data)-1024] }

// sparseFile is a tar of a GNU sparse file (PAX format 0.1) of 1 TiB that
// holds no data.
func sparseFile(t *testing.T) []byte {
	t.Helper()
	var recs []byte
	for _, kv := range []string{"GNU.sparse.numblocks=0", "GNU.sparse.size=1099511627776", "GNU.sparse.map=", "GNU.sparse.name=sparse"} {
		n := len(kv) + 2
		n += len(fmt.Sprint(n + len(fmt.Sprint(n)))) // the length counts its own digits
		recs = fmt.Appendf(recs, "%d %s\n", n, kv)
	}
	return paxHeader(t, recs, file{name: "x"})
}
