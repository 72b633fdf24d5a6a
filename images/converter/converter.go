// Package converter rewrites an image with its layers in another
// compression (gzip, zstd or uncompressed), and optionally in OCI media
// types, writing the new blobs into a content store.
//
// The layers' uncompressed tars, and so the config, its diff IDs and the
// image's chain ID, do not change: a converted image shares its unpacked
// snapshots with its source. Each converted layer is checked against the
// diff ID the config gives for it, so a corrupt source blob fails the
// conversion instead of being copied.
package converter

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"

	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/diff"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/images"
)

// Opt configures Convert.
type Opt func(*options)

type options struct {
	compression diff.Compression
	oci         bool
	platforms   platforms.MatchComparer // nil: all platforms
	progress    func(Progress)
}

// WithCompression sets the compression of the converted layers (gzip by
// default).
func WithCompression(c diff.Compression) Opt { return func(o *options) { o.compression = c } }

// WithOCI writes OCI media types for Docker manifests, indexes, configs
// and layers. A conversion to zstd implies it, as Docker's format has no
// zstd layer.
func WithOCI() Opt { return func(o *options) { o.oci = true } }

// WithPlatforms converts only the manifests of an index that m matches;
// the converted index lists only those. Without it every manifest of an
// index is converted, and each must be in the store.
func WithPlatforms(m platforms.MatchComparer) Opt { return func(o *options) { o.platforms = m } }

// Progress reports one layer converted (or kept as it was).
type Progress struct {
	From, To ocispec.Descriptor
}

// WithProgress calls fn after each layer.
func WithProgress(fn func(Progress)) Opt { return func(o *options) { o.progress = fn } }

// Convert converts the image whose root is src, reading and writing
// store, and returns the root of the converted image. Blobs are written
// with the GC labels that keep a root's children, so the caller should
// hold a lease until an image record names the result.
func Convert(ctx context.Context, store content.Store, src ocispec.Descriptor, opts ...Opt) (ocispec.Descriptor, error) {
	o := options{compression: diff.Gzip}
	for _, opt := range opts {
		opt(&o)
	}
	switch o.compression {
	case diff.Gzip, diff.Zstd, diff.Uncompressed:
	default:
		return ocispec.Descriptor{}, fmt.Errorf("convert: compression %q: %w", o.compression, errdefs.ErrInvalidArgument)
	}
	if o.compression == diff.Zstd {
		o.oci = true
	}
	c := converter{store: store, o: o, layers: map[digest.Digest]ocispec.Descriptor{}}
	switch {
	case images.IsIndex(src.MediaType):
		return c.index(ctx, src)
	case images.IsManifest(src.MediaType):
		return c.manifest(ctx, src)
	}
	return ocispec.Descriptor{}, fmt.Errorf("convert %s: media type %q is no manifest or index: %w", src.Digest, src.MediaType, errdefs.ErrNotImplemented)
}

type converter struct {
	store content.Store
	o     options
	// layers are the layers converted so far, by source digest: an index
	// whose platforms share a layer converts it once.
	layers map[digest.Digest]ocispec.Descriptor
}

func (c *converter) index(ctx context.Context, desc ocispec.Descriptor) (ocispec.Descriptor, error) {
	var idx ocispec.Index
	if err := c.read(ctx, desc, &idx); err != nil {
		return ocispec.Descriptor{}, err
	}
	var out []ocispec.Descriptor
	changed, all := false, len(idx.Manifests)
	for _, m := range idx.Manifests {
		if c.o.platforms != nil && (m.Platform == nil || !c.o.platforms.Match(*m.Platform)) {
			continue
		}
		var (
			conv ocispec.Descriptor
			err  error
		)
		switch {
		case images.IsIndex(m.MediaType):
			conv, err = c.index(ctx, m)
		case images.IsManifest(m.MediaType):
			conv, err = c.manifest(ctx, m)
		default:
			conv = m // an artifact or attestation the converter does not know: kept as it is
		}
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		changed = changed || conv.Digest != m.Digest
		out = append(out, conv)
	}
	if len(out) == 0 {
		return ocispec.Descriptor{}, fmt.Errorf("index %s: no manifest for the platforms asked: %w", desc.Digest, errdefs.ErrNotFound)
	}
	idx.Manifests = out
	idx.MediaType = desc.MediaType
	if c.o.oci {
		idx.MediaType = ocispec.MediaTypeImageIndex
	}
	if !changed && len(out) == all && idx.MediaType == desc.MediaType {
		return desc, nil // nothing to convert: the same bytes, the same digest
	}
	return c.write(ctx, desc, idx.MediaType, idx, out)
}

func (c *converter) manifest(ctx context.Context, desc ocispec.Descriptor) (ocispec.Descriptor, error) {
	var m ocispec.Manifest
	if err := c.read(ctx, desc, &m); err != nil {
		return ocispec.Descriptor{}, err
	}
	var cfg ocispec.Image
	if err := c.read(ctx, m.Config, &cfg); err != nil {
		return ocispec.Descriptor{}, err
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return ocispec.Descriptor{}, fmt.Errorf("manifest %s: %d layers but its config %s has %d diff IDs: %w", desc.Digest, len(m.Layers), m.Config.Digest, len(cfg.RootFS.DiffIDs), errdefs.ErrInvalidArgument)
	}
	changed := false
	for i, l := range m.Layers {
		conv, err := c.layer(ctx, l, cfg.RootFS.DiffIDs[i])
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		changed = changed || conv.Digest != l.Digest || conv.MediaType != l.MediaType
		m.Layers[i] = conv
	}
	m.MediaType = desc.MediaType
	if c.o.oci {
		m.MediaType = ocispec.MediaTypeImageManifest
		if m.Config.MediaType == images.MediaTypeDockerConfig {
			m.Config.MediaType = ocispec.MediaTypeImageConfig
		}
	}
	if !changed && m.MediaType == desc.MediaType {
		return desc, nil // nothing to convert: the same bytes, the same digest
	}
	return c.write(ctx, desc, m.MediaType, m, append([]ocispec.Descriptor{m.Config}, m.Layers...))
}

// layer converts one layer whose uncompressed digest must be diffID.
func (c *converter) layer(ctx context.Context, desc ocispec.Descriptor, diffID digest.Digest) (ocispec.Descriptor, error) {
	if done, ok := c.layers[desc.Digest]; ok {
		return done, nil
	}
	from, err := diff.LayerCompression(desc.MediaType)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("layer %s: %w", desc.Digest, err)
	}
	out := desc
	if from != c.o.compression {
		if out, err = c.recompress(ctx, desc, diffID); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("layer %s: %w", desc.Digest, err)
		}
	}
	out.MediaType = c.layerMediaType(desc.MediaType)
	c.layers[desc.Digest] = out
	if c.o.progress != nil {
		c.o.progress(Progress{From: desc, To: out})
	}
	return out, nil
}

// layerMediaType is the media type of the converted layer of mediaType:
// Docker's own while converting between Docker's compressions, OCI's
// otherwise.
func (c *converter) layerMediaType(mediaType string) string {
	docker := mediaType == images.MediaTypeDockerLayer || mediaType == images.MediaTypeDockerLayerGzip
	if docker && !c.o.oci {
		if c.o.compression == diff.Gzip {
			return images.MediaTypeDockerLayerGzip
		}
		return images.MediaTypeDockerLayer
	}
	return c.o.compression.MediaType()
}

// recompress writes desc's uncompressed tar again in the target
// compression, and checks the tar's digest is diffID.
func (c *converter) recompress(ctx context.Context, desc ocispec.Descriptor, diffID digest.Digest) (_ ocispec.Descriptor, err error) {
	ra, err := c.store.ReaderAt(ctx, desc)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer func() { err = errors.Join(err, ra.Close()) }()
	tar, err := diff.Decompress(desc.MediaType, content.NewReader(ra))
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer func() { err = errors.Join(err, tar.Close()) }()

	// A ref of its own per conversion: two conversions of one layer at
	// once each write their own ingest (the commit of the second finds
	// the blob there).
	var suffix [6]byte
	rand.Read(suffix[:])
	ref := "convert-" + desc.Digest.Encoded() + "-" + string(c.o.compression) + "-" + hex.EncodeToString(suffix[:])
	out, _, err := diff.WriteLayer(ctx, c.store, ref, c.o.compression, diffID, nil, func(w io.Writer) error {
		_, err := io.CopyBuffer(w, tar, make([]byte, content.ChunkSize))
		return err
	})
	if err != nil { // leave no half-written ingest behind
		if aerr := c.store.Abort(context.WithoutCancel(ctx), ref); aerr != nil && !errdefs.IsNotFound(aerr) {
			err = errors.Join(err, aerr)
		}
		return ocispec.Descriptor{}, err
	}
	// No annotations: those of a layer describe its bytes (the TOC digest
	// of an estargz or zstd:chunked layer), which are new.
	return out, nil
}

// read decodes the manifest, index or config desc into v.
func (c *converter) read(ctx context.Context, desc ocispec.Descriptor, v any) error {
	if desc.Size > images.MaxManifestSize {
		return fmt.Errorf("%s %s: %d bytes is more than %d: %w", desc.MediaType, desc.Digest, desc.Size, images.MaxManifestSize, errdefs.ErrInvalidArgument)
	}
	data, err := images.ReadManifest(ctx, c.store, desc)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s %s: %w: %w", desc.MediaType, desc.Digest, err, errdefs.ErrInvalidArgument)
	}
	return nil
}

// write stores v, the converted form of src, as a blob of mediaType
// labelled to keep children, and returns its descriptor (src's platform
// and annotations kept).
func (c *converter) write(ctx context.Context, src ocispec.Descriptor, mediaType string, v any, children []ocispec.Descriptor) (ocispec.Descriptor, error) {
	switch x := v.(type) {
	case ocispec.Index:
		x.Versioned = specs.Versioned{SchemaVersion: 2}
		v = x
	case ocispec.Manifest:
		x.Versioned = specs.Versioned{SchemaVersion: 2}
		v = x
	}
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	out := ocispec.Descriptor{
		MediaType:   mediaType,
		Digest:      digest.FromBytes(data),
		Size:        int64(len(data)),
		Platform:    src.Platform,
		Annotations: maps.Clone(src.Annotations),
	}
	labels := images.GCRefLabels(out, children, nil)
	if err := content.WriteBlob(ctx, c.store, "convert-"+out.Digest.Encoded(), bytes.NewReader(data), out, content.WithLabels(labels)); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("write %s %s: %w", mediaType, out.Digest, err)
	}
	if _, err := c.store.Update(ctx, content.Info{Digest: out.Digest, Labels: labels}, images.LabelFieldpaths(labels)...); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("label %s: %w", out.Digest, err)
	}
	return out, nil
}
