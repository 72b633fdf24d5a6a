package unpack

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/images"
)

// maxIndexDepth bounds the nesting of indexes followed to a manifest.
const maxIndexDepth = 4

// Image is one platform's manifest of an image with its decoded config.
type Image struct {
	// Manifest is the descriptor of the platform's manifest.
	Manifest ocispec.Descriptor
	// Config is the descriptor of the manifest's config blob.
	Config ocispec.Descriptor
	// Layers are the manifest's layers, bottom first.
	Layers []ocispec.Descriptor
	// Spec is the decoded config.
	Spec ocispec.Image
}

// DiffIDs returns the config's diff IDs, one per layer.
func (img Image) DiffIDs() []digest.Digest { return img.Spec.RootFS.DiffIDs }

// ChainID returns the chain ID of the image's whole stack of layers, the
// name of the snapshot a container's root filesystem is prepared on; ""
// for an image without layers.
func (img Image) ChainID() string {
	if len(img.Spec.RootFS.DiffIDs) == 0 {
		return ""
	}
	return identity.ChainID(img.Spec.RootFS.DiffIDs).String()
}

// Resolve reads, from p, the manifest of target that m matches (target
// itself when it is a manifest; the first match of an index, nested
// indexes followed; images.DefaultMatcher when m is nil), its config, and
// checks that the config has one diff ID per layer.
func Resolve(ctx context.Context, p content.Provider, target ocispec.Descriptor, m platforms.MatchComparer) (Image, error) {
	if m == nil {
		m = images.DefaultMatcher()
	}
	desc, err := manifestFor(ctx, p, target, m, 0)
	if err != nil {
		return Image{}, err
	}
	data, err := images.ReadManifest(ctx, p, desc)
	if err != nil {
		return Image{}, err
	}
	var mf ocispec.Manifest
	if err := json.Unmarshal(data, &mf); err != nil {
		return Image{}, fmt.Errorf("manifest %s: %w: %w", desc.Digest, errdefs.ErrInvalidArgument, err)
	}
	if !images.IsConfig(mf.Config.MediaType) {
		return Image{}, fmt.Errorf("manifest %s: config media type %q is not an image config: %w", desc.Digest, mf.Config.MediaType, errdefs.ErrNotImplemented)
	}
	cfg, err := images.ReadManifest(ctx, p, mf.Config)
	if err != nil {
		return Image{}, fmt.Errorf("config of manifest %s: %w", desc.Digest, err)
	}
	img := Image{Manifest: desc, Config: mf.Config, Layers: mf.Layers}
	if err := json.Unmarshal(cfg, &img.Spec); err != nil {
		return Image{}, fmt.Errorf("config %s: %w: %w", mf.Config.Digest, errdefs.ErrInvalidArgument, err)
	}
	if n, l := len(img.Spec.RootFS.DiffIDs), len(mf.Layers); n != l {
		return Image{}, fmt.Errorf("config %s: %d diff IDs for %d layers: %w", mf.Config.Digest, n, l, errdefs.ErrInvalidArgument)
	}
	for i, d := range img.Spec.RootFS.DiffIDs {
		if err := d.Validate(); err != nil {
			return Image{}, fmt.Errorf("config %s: diff ID %d: %w: %w", mf.Config.Digest, i, errdefs.ErrInvalidArgument, err)
		}
	}
	return img, nil
}

// manifestFor returns target when it is a manifest, else the first
// manifest of the index target that m matches.
func manifestFor(ctx context.Context, p content.Provider, target ocispec.Descriptor, m platforms.MatchComparer, depth int) (ocispec.Descriptor, error) {
	switch {
	case images.IsManifest(target.MediaType):
		return target, nil
	case !images.IsIndex(target.MediaType):
		return ocispec.Descriptor{}, fmt.Errorf("%s: media type %q is neither a manifest nor an index: %w", target.Digest, target.MediaType, errdefs.ErrNotImplemented)
	case depth >= maxIndexDepth:
		return ocispec.Descriptor{}, fmt.Errorf("index %s: nested more than %d deep: %w", target.Digest, maxIndexDepth, errdefs.ErrInvalidArgument)
	}
	children, err := images.Children(ctx, p, target)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	var best *ocispec.Descriptor
	for i, d := range children {
		if d.Platform == nil || !images.IsManifest(d.MediaType) || !m.Match(*d.Platform) {
			continue
		}
		if best == nil || m.Less(*d.Platform, *best.Platform) {
			best = &children[i]
		}
	}
	if best != nil {
		return *best, nil
	}
	for _, d := range children {
		if images.IsIndex(d.MediaType) {
			if desc, err := manifestFor(ctx, p, d, m, depth+1); err == nil {
				return desc, nil
			} else if !errdefs.IsNotFound(err) {
				return ocispec.Descriptor{}, err
			}
		}
	}
	return ocispec.Descriptor{}, fmt.Errorf("index %s: no manifest for the platform: %w", target.Digest, errdefs.ErrNotFound)
}
