package images_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/gc"
	"github.com/berthrt/berth/images"
	"github.com/berthrt/berth/storage/content/contenttest"
	"github.com/berthrt/berth/storage/content/local"
)

func desc(mediaType string, data []byte) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
}

func plat(s string) *ocispec.Platform {
	p := platforms.MustParse(s)
	return &p
}

func TestDecodeChildren(t *testing.T) {
	cfg, layer := desc(ocispec.MediaTypeImageConfig, []byte("{}")), desc(ocispec.MediaTypeImageLayerGzip, []byte("layer"))
	tests := []struct {
		name      string
		mediaType string
		data      string
		want      []digest.Digest
		class     error
	}{
		{name: "manifest", mediaType: ocispec.MediaTypeImageManifest, data: `{"schemaVersion":2,"config":{"digest":"` + cfg.Digest.String() + `","size":2},"layers":[{"digest":"` + layer.Digest.String() + `","size":5}]}`, want: []digest.Digest{cfg.Digest, layer.Digest}},
		{name: "docker manifest", mediaType: images.MediaTypeDockerManifest, data: `{"schemaVersion":2,"mediaType":"` + images.MediaTypeDockerManifest + `","config":{"digest":"` + cfg.Digest.String() + `","size":2}}`, want: []digest.Digest{cfg.Digest}},
		{name: "index", mediaType: ocispec.MediaTypeImageIndex, data: `{"schemaVersion":2,"manifests":[{"digest":"` + layer.Digest.String() + `","size":5}]}`, want: []digest.Digest{layer.Digest}},
		{name: "other media type", mediaType: ocispec.MediaTypeImageIndex, data: `{"mediaType":"` + ocispec.MediaTypeImageManifest + `"}`, class: errdefs.ErrInvalidArgument},
		{name: "no config", mediaType: ocispec.MediaTypeImageManifest, data: `{"schemaVersion":2}`, class: errdefs.ErrInvalidArgument},
		{name: "bad child digest", mediaType: ocispec.MediaTypeImageIndex, data: `{"manifests":[{"digest":"sha256:zz","size":5}]}`, class: errdefs.ErrInvalidArgument},
		{name: "negative size", mediaType: ocispec.MediaTypeImageIndex, data: `{"manifests":[{"digest":"` + layer.Digest.String() + `","size":-1}]}`, class: errdefs.ErrInvalidArgument},
		{name: "not JSON", mediaType: ocispec.MediaTypeImageManifest, data: `nope`, class: errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			children, err := images.DecodeChildren(desc(tt.mediaType, []byte(tt.data)), []byte(tt.data))
			if tt.class != nil {
				if !errors.Is(err, tt.class) {
					t.Fatalf("error %v, want %v", err, tt.class)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []digest.Digest
			for _, c := range children {
				got = append(got, c.Digest)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("children %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSelectPlatformsAndLabels(t *testing.T) {
	idx := desc(ocispec.MediaTypeImageIndex, []byte("index"))
	amd := ocispec.Descriptor{Digest: digest.FromString("amd64"), Platform: plat("linux/amd64")}
	arm := ocispec.Descriptor{Digest: digest.FromString("arm"), Platform: plat("linux/arm/v7")}
	none := ocispec.Descriptor{Digest: digest.FromString("attestation")}
	all := []ocispec.Descriptor{amd, arm, none}
	if got := images.SelectPlatforms(all, platforms.OnlyStrict(*plat("linux/arm/v7"))); !slices.Equal(digests(got), digests([]ocispec.Descriptor{arm, none})) {
		t.Errorf("arm/v7: %v", got)
	}
	if got := images.SelectPlatforms(all, nil); len(got) != 3 {
		t.Errorf("all: %v", got)
	}
	labels := images.GCRefLabels(idx, all, images.DefaultMatcher())
	want := map[string]string{gc.LabelRefContent + ".m.0": amd.Digest.String(), gc.LabelRefContent + ".m.2": none.Digest.String()}
	if !equalMaps(labels, want) {
		t.Errorf("index labels %v, want %v", labels, want)
	}
	m := desc(images.MediaTypeDockerManifest, []byte("m"))
	labels = images.GCRefLabels(m, []ocispec.Descriptor{amd, arm}, nil)
	want = map[string]string{gc.LabelRefContent + ".config": amd.Digest.String(), gc.LabelRefContent + ".l.0": arm.Digest.String()}
	if !equalMaps(labels, want) {
		t.Errorf("manifest labels %v, want %v", labels, want)
	}
}

func digests(ds []ocispec.Descriptor) []digest.Digest {
	var out []digest.Digest
	for _, d := range ds {
		out = append(out, d.Digest)
	}
	return out
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestWalk(t *testing.T) {
	ctx := context.Background()
	store, err := local.NewStore(filepath.Join(t.TempDir(), "c"))
	if err != nil {
		t.Fatal(err)
	}
	put := func(mediaType string, v any) ocispec.Descriptor {
		data, ok := v.([]byte)
		if !ok {
			data, _ = json.Marshal(v)
		}
		d := desc(mediaType, data)
		if err := content.WriteBlob(ctx, store, d.Digest.String(), bytesReader(data), d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	shared := put(ocispec.MediaTypeImageLayer, []byte("shared layer"))
	var mans []ocispec.Descriptor
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		cfg := put(ocispec.MediaTypeImageConfig, []byte(`{"os":"`+p+`"}`))
		m := put(ocispec.MediaTypeImageManifest, ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{shared}})
		m.Platform = plat(p)
		mans = append(mans, m)
	}
	root := put(ocispec.MediaTypeImageIndex, ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: mans})

	var seen []digest.Digest
	h := images.FilterPlatforms(images.ChildrenHandler(store), nil)
	err = images.Walk(ctx, func(ctx context.Context, d ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		seen = append(seen, d.Digest)
		return h(ctx, d)
	}, root)
	if err != nil || len(seen) != 1+2*2+1 || seen[0] != root.Digest {
		t.Errorf("walk saw %d blobs (%v), want 6, the shared layer once, the root first", len(seen), err)
	}
	seen = nil
	h = images.FilterPlatforms(images.ChildrenHandler(store), images.DefaultMatcher())
	_ = images.Walk(ctx, func(ctx context.Context, d ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		seen = append(seen, d.Digest)
		return h(ctx, d)
	}, root)
	if len(seen) != 4 || slices.Contains(seen, mans[1].Digest) {
		t.Errorf("walk for amd64 saw %v", seen)
	}
	c, err := images.Check(ctx, store, root, images.DefaultMatcher())
	if err != nil || c.String() != "complete (4/4)" {
		t.Errorf("check %v, %v", c, err)
	}
}

// TestSmallBlobReadersBoundedByDescriptor: a manifest that names an
// already stored 8 GiB blob as its config, or an index that names it as a
// manifest, each with a size of 2, is refused naming the size mismatch,
// without reading the stored size into memory.
func TestSmallBlobReadersBoundedByDescriptor(t *testing.T) {
	root := t.TempDir()
	store, err := local.NewStore(root)
	if err != nil {
		t.Fatal(err)
	}
	big := contenttest.PlantSparseBlob(t, root, 8<<30)
	ctx := context.Background()
	for _, d := range []ocispec.Descriptor{
		{MediaType: ocispec.MediaTypeImageConfig, Digest: big, Size: 2},
		{MediaType: ocispec.MediaTypeImageManifest, Digest: big, Size: 2},
		{MediaType: ocispec.MediaTypeImageIndex, Digest: big, Size: 2},
	} {
		var err error
		if images.IsConfig(d.MediaType) {
			err = images.CheckConfig(ctx, store, d)
		} else {
			_, err = images.Children(ctx, store, d)
		}
		if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "8589934592 bytes, the descriptor says 2") {
			t.Errorf("%s naming an 8 GiB blob with size 2: %v, want the size mismatch", d.MediaType, err)
		}
	}
}
