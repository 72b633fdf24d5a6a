package client

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/images"
	"github.com/berthrt/berth/namespaces"
)

// An Image reads its manifest and config once: the chain ID and the
// config that a container made from it needs cost one resolution, not
// one each (the target is named by its digest, so it cannot change).
func TestImageResolvesOnce(t *testing.T) {
	c, f := connect(t)
	ctx := namespaces.WithNamespace(context.Background(), "ci")
	layer := digest.FromString("layer")
	config, err := json.Marshal(ocispec.Image{
		Config: ocispec.ImageConfig{Cmd: []string{"/bin/sh"}},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layer}},
	})
	if err != nil {
		t.Fatal(err)
	}
	configDgst := f.content.add(config)
	manifest, err := json.Marshal(ocispec.Manifest{
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: configDgst, Size: int64(len(config))},
		Layers:    []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayer, Digest: layer, Size: 5}},
	})
	if err != nil {
		t.Fatal(err)
	}
	manifestDgst := f.content.add(manifest)
	img := NewImage(c, images.Image{Name: "app", Target: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: manifestDgst, Size: int64(len(manifest))}})

	id, err := img.ChainID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if id != layer.String() {
		t.Errorf("chain id %s, want %s", id, layer)
	}
	calls := f.content.callCount()
	if calls == 0 {
		t.Fatal("resolving the image read nothing")
	}
	spec, err := img.Spec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(spec.Config.Cmd) != 1 || spec.Config.Cmd[0] != "/bin/sh" {
		t.Errorf("config %+v", spec.Config)
	}
	if again, err := img.ChainID(ctx); err != nil || again != id {
		t.Errorf("chain id again: %s, %v", again, err)
	}
	if n := f.content.callCount(); n != calls {
		t.Errorf("Spec and ChainID after the first resolution made %d content calls, want none", n-calls)
	}
}
