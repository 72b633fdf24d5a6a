package diff

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/archive"
	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/mount"
)

// NewComparer returns a Comparer that writes its layers through ing.
// Mounts it cannot read in place (an overlay, such as a running
// container's snapshot) are mounted under tempMounts, a folder only root
// may enter (see mount.WithTempMount); with "" they are refused.
func NewComparer(ing content.Ingester, tempMounts string) Comparer {
	return comparer{ing: ing, tempMounts: tempMounts}
}

type comparer struct {
	ing        content.Ingester
	tempMounts string
}

func (c comparer) Compare(ctx context.Context, lower, upper []mount.Mount, opts ...CompareOpt) (ocispec.Descriptor, error) {
	o := compareOptions{compression: Gzip}
	for _, opt := range opts {
		opt(&o)
	}
	if o.ref == "" {
		var b [12]byte
		rand.Read(b[:])
		o.ref = "compare-" + hex.EncodeToString(b[:])
	}
	desc, _, err := WriteLayer(ctx, c.ing, o.ref, o.compression, "", o.labels, func(w io.Writer) error {
		return withMounted(c.tempMounts, lower, true, func(lowerRoot string, _ ...archive.ApplyOpt) error {
			return withMounted(c.tempMounts, upper, true, func(upperRoot string, _ ...archive.ApplyOpt) error {
				return archive.Compare(ctx, w, lowerRoot, upperRoot)
			})
		})
	})
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("compare: %w", err)
	}
	return desc, nil
}
