package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/errdefs"
)

// Children returns what the manifest or index desc references, read from
// p: an index's manifests in their order, or a manifest's config followed
// by its layers. Any other media type has no children. A schema 1
// manifest is ErrNotImplemented.
func Children(ctx context.Context, p content.Provider, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	if !IsIndex(desc.MediaType) && !IsManifest(desc.MediaType) {
		if IsSchema1(desc.MediaType) {
			return nil, fmt.Errorf("manifest %s: Docker schema 1 (%s) is not supported: %w", desc.Digest, desc.MediaType, errdefs.ErrNotImplemented)
		}
		return nil, nil
	}
	data, err := ReadManifest(ctx, p, desc)
	if err != nil {
		return nil, err
	}
	return DecodeChildren(desc, data)
}

// ReadManifest reads the manifest, index or config desc from p, refusing
// one larger than MaxManifestSize, and verifies its size and digest.
func ReadManifest(ctx context.Context, p content.Provider, desc ocispec.Descriptor) ([]byte, error) {
	if desc.Size > MaxManifestSize {
		return nil, fmt.Errorf("%s %s: %d bytes, more than %d: %w", kind(desc.MediaType), desc.Digest, desc.Size, MaxManifestSize, errdefs.ErrInvalidArgument)
	}
	data, err := content.ReadBlob(ctx, p, desc)
	if err != nil {
		return nil, err
	}
	if int64(len(data)) != desc.Size || digest.FromBytes(data) != desc.Digest {
		return nil, fmt.Errorf("%s %s: the stored bytes (%d) do not match the descriptor (%d bytes): %w", kind(desc.MediaType), desc.Digest, len(data), desc.Size, errdefs.ErrFailedPrecondition)
	}
	return data, nil
}

// DecodeChildren decodes data, the bytes of the manifest or index desc,
// and returns its children as Children does.
func DecodeChildren(desc ocispec.Descriptor, data []byte) ([]ocispec.Descriptor, error) {
	var v struct {
		MediaType string               `json:"mediaType"`
		Manifests []ocispec.Descriptor `json:"manifests"`
		Config    *ocispec.Descriptor  `json:"config"`
		Layers    []ocispec.Descriptor `json:"layers"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("%s %s: %w: %w", kind(desc.MediaType), desc.Digest, err, errdefs.ErrInvalidArgument)
	}
	if v.MediaType != "" && v.MediaType != desc.MediaType {
		return nil, fmt.Errorf("%s %s: its media type %q is not the descriptor's %q: %w", kind(desc.MediaType), desc.Digest, v.MediaType, desc.MediaType, errdefs.ErrInvalidArgument)
	}
	var children []ocispec.Descriptor
	if IsIndex(desc.MediaType) {
		children = v.Manifests
	} else {
		if v.Config == nil || v.Config.Digest == "" {
			return nil, fmt.Errorf("manifest %s: no config: %w", desc.Digest, errdefs.ErrInvalidArgument)
		}
		children = append([]ocispec.Descriptor{*v.Config}, v.Layers...)
	}
	for _, c := range children {
		if err := CheckDescriptor(c); err != nil {
			return nil, fmt.Errorf("%s %s: %w", kind(desc.MediaType), desc.Digest, err)
		}
	}
	return children, nil
}

// CheckDescriptor checks what a descriptor from outside must be: a valid
// digest, a size that is not negative.
func CheckDescriptor(d ocispec.Descriptor) error {
	if err := d.Digest.Validate(); err != nil {
		return fmt.Errorf("descriptor digest %.80q: %w: %w", d.Digest, err, errdefs.ErrInvalidArgument)
	}
	if d.Size < 0 {
		return fmt.Errorf("descriptor %s: negative size %d: %w", d.Digest, d.Size, errdefs.ErrInvalidArgument)
	}
	return nil
}

func kind(mediaType string) string {
	switch {
	case IsIndex(mediaType):
		return "index"
	case IsManifest(mediaType):
		return "manifest"
	}
	return "blob"
}

// Handler handles one descriptor of a walk and returns the children to
// walk next.
type Handler func(ctx context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error)

// ErrSkipChildren, returned by a Handler, stops the walk below its
// descriptor without failing it.
var ErrSkipChildren = errors.New("skip children")

// ChildrenHandler is the Handler that returns Children from p.
func ChildrenHandler(p content.Provider) Handler {
	return func(ctx context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		return Children(ctx, p, desc)
	}
}

// FilterPlatforms keeps, of the children h returns for an index, those
// SelectPlatforms keeps.
func FilterPlatforms(h Handler, m platforms.MatchComparer) Handler {
	return func(ctx context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		children, err := h(ctx, desc)
		if err != nil || !IsIndex(desc.MediaType) {
			return children, err
		}
		return SelectPlatforms(children, m), nil
	}
}

// SelectPlatforms returns the descriptors of an index that m matches, in
// their order, and those without a platform (a nested index, or an
// attestation): all of them when m is nil.
func SelectPlatforms(descs []ocispec.Descriptor, m platforms.MatchComparer) []ocispec.Descriptor {
	if m == nil {
		return descs
	}
	var out []ocispec.Descriptor
	for _, d := range descs {
		if d.Platform == nil || m.Match(*d.Platform) {
			out = append(out, d)
		}
	}
	return out
}

// Walk calls h for each of descs and, depth first, for the children it
// returns; each digest once, a parent before its children. An error
// other than ErrSkipChildren stops the walk and is returned.
func Walk(ctx context.Context, h Handler, descs ...ocispec.Descriptor) error {
	seen := map[digest.Digest]bool{}
	var walk func(descs []ocispec.Descriptor) error
	walk = func(descs []ocispec.Descriptor) error {
		for _, d := range descs {
			if seen[d.Digest] {
				continue
			}
			seen[d.Digest] = true
			if err := ctx.Err(); err != nil {
				return err
			}
			children, err := h(ctx, d)
			if errors.Is(err, ErrSkipChildren) {
				continue
			}
			if err != nil {
				return err
			}
			if err := walk(children); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(descs)
}
