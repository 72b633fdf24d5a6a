package diff

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/errdefs"
)

// WriteLayer writes the tar that write produces as a layer blob of
// compression c through ing, under ref (what an earlier ingest of the
// ref left is started again), labelled with labels and with its diff ID
// (LabelUncompressed). When want is not empty the tar must digest to it,
// else ErrFailedPrecondition, checked before anything is committed. It
// returns the layer's descriptor and its diff ID. On error the ingest is
// left: a caller that can aborts it.
func WriteLayer(ctx context.Context, ing content.Ingester, ref string, c Compression, want digest.Digest, labels map[string]string, write func(io.Writer) error) (_ ocispec.Descriptor, _ digest.Digest, err error) {
	w, err := ing.Writer(ctx, content.WithRef(ref))
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	defer func() { err = errors.Join(err, w.Close()) }()
	if err := w.Truncate(0); err != nil {
		return ocispec.Descriptor{}, "", err
	}
	zw, err := Compress(c, w)
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	tar := digest.Canonical.Digester()
	if err := write(io.MultiWriter(zw, tar.Hash())); err != nil {
		return ocispec.Descriptor{}, "", err
	}
	if err := zw.Close(); err != nil {
		return ocispec.Descriptor{}, "", err
	}
	diffID := tar.Digest()
	if want != "" && diffID != want {
		return ocispec.Descriptor{}, "", fmt.Errorf("the layer's uncompressed tar is %s, not %s: %w", diffID, want, errdefs.ErrFailedPrecondition)
	}
	st, err := w.Status()
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	desc := ocispec.Descriptor{MediaType: c.MediaType(), Digest: w.Digest(), Size: st.Offset}
	l := maps.Clone(labels)
	if l == nil {
		l = map[string]string{}
	}
	l[LabelUncompressed] = diffID.String()
	if err := w.Commit(ctx, desc.Size, desc.Digest, content.WithLabels(l)); err != nil && !errdefs.IsAlreadyExists(err) {
		return ocispec.Descriptor{}, "", fmt.Errorf("commit layer %s: %w", desc.Digest, err)
	}
	return desc, diffID, nil
}
