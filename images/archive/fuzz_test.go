package archive_test

import (
	"archive/tar"
	"bytes"
	"context"
	"testing"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/images/archive"
	"github.com/berthrt/berth/storage/content/local"
)

// FuzzImport: any bytes are imported or refused, never a panic, and a
// refused archive leaves no ingest behind.
func FuzzImport(f *testing.F) {
	// The local store alone, without bbolt's fsyncs: fast enough to fuzz.
	store, err := local.NewStore(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	ctx := context.Background()
	layer := []byte("layer")
	cfg := []byte(`{"os":"linux","architecture":"amd64","rootfs":{"type":"layers","diff_ids":["` + digest.FromBytes(layer).String() + `"]}}`)
	desc := func(mt string, b []byte) ocispec.Descriptor {
		return ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(b), Size: int64(len(b))}
	}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: desc(ocispec.MediaTypeImageConfig, cfg), Layers: []ocispec.Descriptor{desc(ocispec.MediaTypeImageLayer, layer)}}
	mdata := mustJSON(f, m)
	root := desc(ocispec.MediaTypeImageManifest, mdata)
	root.Annotations = map[string]string{ocispec.AnnotationRefName: "a.io/b:c"}
	idx := mustJSON(f, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, Manifests: []ocispec.Descriptor{root}})
	blob := func(b []byte) file { return file{name: "blobs/sha256/" + digest.FromBytes(b).Encoded(), data: b} }
	f.Add(tarOf(f, file{name: "oci-layout", data: []byte(`{"imageLayoutVersion":"1.0.0"}`)}, blob(layer), blob(cfg), blob(mdata), file{name: "index.json", data: idx}))
	f.Add(tarOf(f, file{name: "l.tar", data: layer}, file{name: "c.json", data: cfg},
		file{hdr: &tar.Header{Typeflag: tar.TypeSymlink, Name: "x/layer.tar", Linkname: "../l.tar"}},
		file{name: "manifest.json", data: []byte(`[{"Config":"c.json","RepoTags":["b:c"],"Layers":["x/layer.tar"]}]`)}))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := archive.Import(ctx, store, nil, bytes.NewReader(data))
		if err == nil {
			return
		}
		if st, _ := store.ListStatuses(ctx); len(st) != 0 {
			t.Fatalf("ingests left after %v: %v", err, st)
		}
	})
}
