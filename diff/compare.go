package diff

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/archive"
	"github.com/berthrt/berth/mount"
	"github.com/berthrt/berth/storage/content"
)

// NewComparer returns a Comparer that writes its layers through ing.
func NewComparer(ing content.Ingester) Comparer { return comparer{ing: ing} }

type comparer struct{ ing content.Ingester }

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
		return withMounted(lower, true, func(lowerRoot string, _ ...archive.ApplyOpt) error {
			return withMounted(upper, true, func(upperRoot string, _ ...archive.ApplyOpt) error {
				return archive.Compare(ctx, w, lowerRoot, upperRoot)
			})
		})
	})
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("compare: %w", err)
	}
	return desc, nil
}
