package diff

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/archive"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/mount"
	"github.com/berthrt/berth/storage/content"
)

// NewComparer returns a Comparer that writes its layers through ing.
func NewComparer(ing content.Ingester) Comparer { return comparer{ing: ing} }

type comparer struct{ ing content.Ingester }

func (c comparer) Compare(ctx context.Context, lower, upper []mount.Mount, opts ...CompareOpt) (_ ocispec.Descriptor, err error) {
	o := compareOptions{compression: Gzip}
	for _, opt := range opts {
		opt(&o)
	}
	if o.ref == "" {
		var b [12]byte
		rand.Read(b[:])
		o.ref = "compare-" + hex.EncodeToString(b[:])
	}
	cw, err := c.ing.Writer(ctx, content.WithRef(o.ref))
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer func() { err = errors.Join(err, cw.Close()) }()
	if err := cw.Truncate(0); err != nil { // a left-over ingest of the ref
		return ocispec.Descriptor{}, err
	}

	counted := &countingWriter{w: cw}
	zw, err := Compress(o.compression, counted)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	diffID := digest.Canonical.Digester()
	err = withMounted(lower, true, func(lowerRoot string, _ ...archive.ApplyOpt) error {
		return withMounted(upper, true, func(upperRoot string, _ ...archive.ApplyOpt) error {
			return archive.Compare(ctx, io.MultiWriter(diffID.Hash(), zw), lowerRoot, upperRoot)
		})
	})
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("compare: %w", err)
	}
	labels := maps.Clone(o.labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelUncompressed] = diffID.Digest().String()
	dgst := cw.Digest()
	if err := cw.Commit(ctx, counted.n, dgst, content.WithLabels(labels)); err != nil && !errdefs.IsAlreadyExists(err) {
		return ocispec.Descriptor{}, fmt.Errorf("compare: commit layer %s: %w", dgst, err)
	}
	return ocispec.Descriptor{
		MediaType: o.compression.MediaType(),
		Digest:    dgst,
		Size:      counted.n,
	}, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
