package images

import (
	"context"
	"fmt"

	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/errdefs"
)

// InfoProvider reads blobs and says which are there: what Check and
// export need of a content store.
type InfoProvider interface {
	content.Provider
	Info(ctx context.Context, dgst digest.Digest) (content.Info, error)
}

// Availability is what Check found of an image.
type Availability string

const (
	// Complete: every blob the image needs (for the platforms asked for)
	// is in the store.
	Complete Availability = "complete"
	// Incomplete: the root is there, some blobs below it are not.
	Incomplete Availability = "incomplete"
	// Unavailable: the root manifest or index itself is not there.
	Unavailable Availability = "unavailable"
)

// CheckResult says how much of an image the store holds, as
// `ctr images check` shows it: "complete (3/3)", "incomplete (2/3)",
// with the sizes present and in all.
type CheckResult struct {
	Availability Availability
	// Required is the number of distinct blobs the image was found to
	// need; Present how many of them the store holds. A missing manifest
	// counts as one blob: what it would reference is unknown.
	Required, Present int
	// Size is the sum of the sizes of the required blobs, PresentSize of
	// those present.
	Size, PresentSize int64
	// Missing are the required blobs that are absent.
	Missing []ocispec.Descriptor
}

// String is "complete (3/3)", "incomplete (2/3)" or "unavailable (0/1)".
func (r CheckResult) String() string {
	return fmt.Sprintf("%s (%d/%d)", r.Availability, r.Present, r.Required)
}

// Check walks the image whose root is target, through the manifests of
// an index that m matches (all when m is nil), and counts which blobs
// store holds. Only a blob that is there and whose size agrees with its
// descriptor counts as present. A manifest or index that is there but
// does not decode is an error, as is a cancelled ctx.
func Check(ctx context.Context, store InfoProvider, target ocispec.Descriptor, m platforms.MatchComparer) (CheckResult, error) {
	var r CheckResult
	children := ChildrenHandler(store)
	if m != nil {
		children = FilterPlatforms(children, m)
	}
	err := Walk(ctx, func(ctx context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		r.Required++
		r.Size += desc.Size
		info, err := store.Info(ctx, desc.Digest)
		if errdefs.IsNotFound(err) || err == nil && info.Size != desc.Size {
			r.Missing = append(r.Missing, desc)
			return nil, ErrSkipChildren
		}
		if err != nil {
			return nil, err
		}
		r.Present++
		r.PresentSize += desc.Size
		return children(ctx, desc)
	}, target)
	if err != nil {
		return CheckResult{}, err
	}
	switch {
	case len(r.Missing) == 0:
		r.Availability = Complete
	case r.Missing[0].Digest == target.Digest:
		r.Availability = Unavailable
	default:
		r.Availability = Incomplete
	}
	return r, nil
}
