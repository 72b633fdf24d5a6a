package converter_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/diff"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/gc"
	"github.com/berthrt/berth/images/converter"
	"github.com/berthrt/berth/internal/testimage"
	"github.com/berthrt/berth/storage/content/local"
)

func newStore(t *testing.T) content.Store {
	t.Helper()
	s, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func put(t *testing.T, s content.Store, data []byte, mediaType string) ocispec.Descriptor {
	t.Helper()
	d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
	if err := content.WriteBlob(context.Background(), s, "t-"+d.Digest.Encoded(), bytes.NewReader(data), d); err != nil {
		t.Fatal(err)
	}
	return d
}

// twoLayers builds a two-layer image into a new store.
func twoLayers(t *testing.T) (content.Store, *testimage.Image) {
	t.Helper()
	img, err := testimage.Build(ocispec.ImageConfig{Cmd: []string{"/bin/sh"}},
		[]testimage.Entry{testimage.Dir("etc"), testimage.File("etc/a", strings.Repeat("a", 5000))},
		[]testimage.Entry{testimage.File("etc/b", "bee"), testimage.Whiteout("etc/a")},
	)
	if err != nil {
		t.Fatal(err)
	}
	s := newStore(t)
	for _, data := range img.Blobs {
		put(t, s, data, "")
	}
	return s, img
}

func readJSON(t *testing.T, s content.Store, d ocispec.Descriptor, v any) {
	t.Helper()
	data, err := content.ReadBlob(context.Background(), s, d)
	if err != nil {
		t.Fatal(err)
	}
	if digest.FromBytes(data) != d.Digest {
		t.Fatalf("%s: stored bytes do not match", d.Digest)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatal(err)
	}
}

// uncompressedDigest decompresses the layer d and digests its tar.
func uncompressedDigest(t *testing.T, s content.Store, d ocispec.Descriptor) digest.Digest {
	t.Helper()
	ra, err := s.ReaderAt(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	r, err := diff.Decompress(d.MediaType, content.NewReader(ra))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	h := digest.Canonical.Digester()
	if _, err := io.Copy(h.Hash(), r); err != nil {
		t.Fatalf("layer %s (%s): %v", d.Digest, d.MediaType, err)
	}
	return h.Digest()
}

func TestConvertEachCompression(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		to        diff.Compression
		mediaType string
	}{
		{diff.Zstd, ocispec.MediaTypeImageLayerZstd},
		{diff.Uncompressed, ocispec.MediaTypeImageLayer},
	} {
		t.Run(string(tc.to), func(t *testing.T) {
			s, img := twoLayers(t)
			var progress []converter.Progress
			out, err := converter.Convert(ctx, s, img.Manifest, converter.WithCompression(tc.to), converter.WithProgress(func(p converter.Progress) { progress = append(progress, p) }))
			if err != nil {
				t.Fatal(err)
			}
			if out.Digest == img.Manifest.Digest || out.MediaType != ocispec.MediaTypeImageManifest {
				t.Fatalf("converted manifest %+v", out)
			}
			var m ocispec.Manifest
			readJSON(t, s, out, &m)
			if m.Config.Digest != img.Config.Digest || len(m.Layers) != 2 || len(progress) != 2 {
				t.Fatalf("manifest %+v, %d progress reports", m, len(progress))
			}
			for i, l := range m.Layers {
				if l.MediaType != tc.mediaType || l.Digest == img.Layers[i].Digest {
					t.Fatalf("layer %d: %+v, want a new %s", i, l, tc.mediaType)
				}
				if got := uncompressedDigest(t, s, l); got != img.DiffIDs[i] {
					t.Fatalf("layer %d uncompresses to %s, want diff ID %s", i, got, img.DiffIDs[i])
				}
				info, err := s.Info(ctx, l.Digest)
				if err != nil {
					t.Fatal(err)
				}
				if info.Labels[diff.LabelUncompressed] != img.DiffIDs[i].String() {
					t.Fatalf("layer %d labels %v", i, info.Labels)
				}
			}
			info, err := s.Info(ctx, out.Digest)
			if err != nil {
				t.Fatal(err)
			}
			if info.Labels[gc.LabelRefContent+".config"] != img.Config.Digest.String() || info.Labels[gc.LabelRefContent+".l.1"] != m.Layers[1].Digest.String() {
				t.Fatalf("manifest GC labels %v", info.Labels)
			}

			// Back to gzip: the same diff IDs again, and converting a
			// gzip image to gzip changes nothing.
			back, err := converter.Convert(ctx, s, out, converter.WithCompression(diff.Gzip))
			if err != nil {
				t.Fatal(err)
			}
			var bm ocispec.Manifest
			readJSON(t, s, back, &bm)
			for i, l := range bm.Layers {
				if l.MediaType != ocispec.MediaTypeImageLayerGzip || uncompressedDigest(t, s, l) != img.DiffIDs[i] {
					t.Fatalf("layer %d after the way back: %+v", i, l)
				}
			}
			noIngests(t, s)
			same, err := converter.Convert(ctx, s, img.Manifest)
			if err != nil || same.Digest != img.Manifest.Digest {
				t.Fatalf("gzip to gzip: %v, %v; want the source unchanged", same.Digest, err)
			}
		})
	}
}

func TestConvertIndexPlatforms(t *testing.T) {
	ctx := context.Background()
	s, img := twoLayers(t)
	amd := img.Manifest
	amd.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	// An arm64 entry whose manifest is not in the store, as after a
	// single-platform pull.
	arm := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("absent"), Size: 10, Platform: &ocispec.Platform{OS: "linux", Architecture: "arm64"}}
	data, err := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{amd, arm}})
	if err != nil {
		t.Fatal(err)
	}
	idx := put(t, s, data, ocispec.MediaTypeImageIndex)

	if _, err := converter.Convert(ctx, s, idx, converter.WithCompression(diff.Zstd)); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), arm.Digest.String()) {
		t.Fatalf("all platforms with one missing: %v, want not found naming it", err)
	}
	out, err := converter.Convert(ctx, s, idx, converter.WithCompression(diff.Zstd), converter.WithPlatforms(platforms.OnlyStrict(*amd.Platform)))
	if err != nil {
		t.Fatal(err)
	}
	var got ocispec.Index
	readJSON(t, s, out, &got)
	if len(got.Manifests) != 1 || got.Manifests[0].Platform == nil || got.Manifests[0].Platform.Architecture != "amd64" || got.Manifests[0].Digest == amd.Digest {
		t.Fatalf("converted index %+v", got)
	}
	info, err := s.Info(ctx, out.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if info.Labels[gc.LabelRefContent+".m.0"] != got.Manifests[0].Digest.String() {
		t.Fatalf("index GC labels %v", info.Labels)
	}
	if _, err := converter.Convert(ctx, s, idx, converter.WithPlatforms(platforms.OnlyStrict(ocispec.Platform{OS: "linux", Architecture: "s390x"}))); !errdefs.IsNotFound(err) {
		t.Fatalf("no matching platform: %v, want not found", err)
	}
}

// TestConvertCorruptLayer: a layer whose bytes do not decompress to the
// config's diff ID fails, naming the layer, and no image comes of it.
func TestConvertCorruptLayer(t *testing.T) {
	ctx := context.Background()
	s, img := twoLayers(t)
	// A config whose second diff ID is wrong.
	var cfg ocispec.Image
	readJSON(t, s, img.Config, &cfg)
	cfg.RootFS.DiffIDs[1] = digest.FromString("not this layer")
	data, _ := json.Marshal(cfg)
	badCfg := put(t, s, data, ocispec.MediaTypeImageConfig)
	data, _ = json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: badCfg, Layers: img.Layers})
	m := put(t, s, data, ocispec.MediaTypeImageManifest)
	_, err := converter.Convert(ctx, s, m, converter.WithCompression(diff.Zstd))
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), img.Layers[1].Digest.String()) {
		t.Fatalf("convert with a wrong diff ID: %v, want failed precondition naming layer %s", err, img.Layers[1].Digest)
	}
	noIngests(t, s)
	if _, err := converter.Convert(ctx, s, m, converter.WithCompression("lz4")); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("unknown compression: %v", err)
	}
	if _, err := converter.Convert(ctx, s, img.Config); !errdefs.IsNotImplemented(err) {
		t.Fatalf("a config as root: %v", err)
	}
}

// noIngests fails t when s holds an ingest.
func noIngests(t *testing.T, s content.Store) {
	t.Helper()
	st, err := s.ListStatuses(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 0 {
		t.Fatalf("ingests left behind: %+v", st)
	}
}
