package client

import (
	"context"
	"fmt"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/archive"
	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/diff"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/apiconv"
	"github.com/berthrt/berth/mount"
	diffv1 "github.com/berthrt/berth/proto/diff/v1"
)

// DiffService is the daemon's diff API: layers applied onto mounts and
// mounts compared into layers, in the daemon, with the content of the
// call's namespace. Its Apply makes it a diff.Applier, so that an unpack
// (package unpack) runs through the daemon.
type DiffService interface {
	diff.Applier
	// Compare writes the changes from lower (none: an empty tree) to
	// upper as a layer into the namespace's content store, under the
	// context's lease, and returns its descriptor and its diff ID (the
	// digest of the uncompressed tar).
	Compare(ctx context.Context, lower, upper []mount.Mount, opts ...DiffOpt) (ocispec.Descriptor, digest.Digest, error)
}

// DiffOpt configures DiffService.Compare.
type DiffOpt func(*diffv1.DiffRequest)

// WithDiffMediaType sets the layer's media type, which says how it is
// compressed: ocispec.MediaTypeImageLayerGzip (the default),
// MediaTypeImageLayerZstd or MediaTypeImageLayer (none).
func WithDiffMediaType(mediaType string) DiffOpt {
	return func(r *diffv1.DiffRequest) { r.MediaType = mediaType }
}

// WithDiffRef names the content ingest the layer is written through (a
// unique one by default).
func WithDiffRef(ref string) DiffOpt {
	return func(r *diffv1.DiffRequest) { r.Ref = ref }
}

// WithDiffLabels sets labels of the layer blob.
func WithDiffLabels(labels map[string]string) DiffOpt {
	return func(r *diffv1.DiffRequest) { r.Labels = labels }
}

// DiffService returns the daemon's diff API. Calls act in the namespace
// of their context, else the client's default.
func (c *Client) DiffService() DiffService {
	return &remoteDiff{client: c}
}

type remoteDiff struct{ client *Client }

func (r *remoteDiff) api() diffv1.DiffService { return diffv1.NewDiffClient(r.client.api().ttrpc) }

// Apply applies desc, which the daemon reads from the namespace's content
// store (provider is not used), with the daemon's own options: archive
// options cannot travel and are ErrNotImplemented.
func (r *remoteDiff) Apply(ctx context.Context, desc ocispec.Descriptor, mounts []mount.Mount, _ content.Provider, opts ...archive.ApplyOpt) (ocispec.Descriptor, error) {
	if len(opts) > 0 {
		return ocispec.Descriptor{}, fmt.Errorf("apply layer %s: archive options are not sent to the daemon: %w", desc.Digest, errdefs.ErrNotImplemented)
	}
	resp, err := r.api().Apply(ctx, &diffv1.ApplyRequest{Diff: apiconv.DescriptorToProto(desc), Mounts: apiconv.MountsToProto(mounts)})
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return apiconv.DescriptorFromProto(resp.GetApplied()), nil
}

func (r *remoteDiff) Compare(ctx context.Context, lower, upper []mount.Mount, opts ...DiffOpt) (ocispec.Descriptor, digest.Digest, error) {
	req := &diffv1.DiffRequest{Left: apiconv.MountsToProto(lower), Right: apiconv.MountsToProto(upper)}
	for _, opt := range opts {
		opt(req)
	}
	resp, err := r.api().Diff(ctx, req)
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	diffID := digest.Digest(resp.GetDiffId())
	if err := diffID.Validate(); err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("diff: the daemon's diff ID %q: %w: %w", diffID, errdefs.ErrInternal, err)
	}
	return apiconv.DescriptorFromProto(resp.GetDiff()), diffID, nil
}
