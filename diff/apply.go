package diff

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/archive"
	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/images"
	"github.com/berthrt/berth/mount"
)

// NewApplier returns an Applier that works on this host's mounts. Mounts
// it cannot write into in place are mounted under tempMounts, a folder
// only root may enter (see mount.WithTempMount); with "" they are refused.
func NewApplier(tempMounts string) Applier { return applier{tempMounts: tempMounts} }

type applier struct{ tempMounts string }

func (a applier) Apply(ctx context.Context, desc ocispec.Descriptor, mounts []mount.Mount, provider content.Provider, opts ...archive.ApplyOpt) (_ ocispec.Descriptor, err error) {
	compression, err := layerCompression(desc.MediaType)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	ra, err := provider.ReaderAt(ctx, desc)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	// Closed once: early when the apply fails, so that a reader still
	// waiting for bytes (a blob a pull is still fetching) lets the
	// decompressing goroutine, which Close waits for, end at once.
	closeRA := sync.OnceValue(ra.Close)
	defer func() { err = errors.Join(err, closeRA()) }()

	digester := digest.Canonical.Digester()
	var size int64
	err = withMounted(a.tempMounts, mounts, false, func(root string, mopts ...archive.ApplyOpt) error {
		ahead := newReadahead(digester.Hash(), func(w io.Writer) error {
			// Read the blob a chunk at a time: without a reader
			// that buffers, gzip reads it 4 KiB at a time.
			r, err := decompress(compression, bufio.NewReaderSize(content.NewReader(ra), readaheadChunk))
			if err != nil {
				return err
			}
			defer r.Close()
			_, err = io.CopyBuffer(w, r, make([]byte, readaheadChunk))
			return err
		})
		defer ahead.Close()
		var err error
		size, err = archive.Apply(ctx, root, ahead, append(mopts, opts...)...)
		if err != nil {
			closeRA()
		}
		return err
	})
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("layer %s: %w", desc.Digest, err)
	}
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digester.Digest(), Size: size}, nil
}

type compression int

const (
	uncompressed compression = iota
	gzipped
	zstded
)

// layerCompression maps a layer media type to its compression.
func layerCompression(mediaType string) (compression, error) {
	switch mediaType {
	case ocispec.MediaTypeImageLayer, images.MediaTypeDockerLayer,
		ocispec.MediaTypeImageLayerNonDistributable: //nolint:staticcheck // still found in images
		return uncompressed, nil
	case ocispec.MediaTypeImageLayerGzip, images.MediaTypeDockerLayerGzip, images.MediaTypeDockerForeignLayer,
		ocispec.MediaTypeImageLayerNonDistributableGzip: //nolint:staticcheck // still found in images
		return gzipped, nil
	case ocispec.MediaTypeImageLayerZstd, images.MediaTypeDockerLayerZstd,
		ocispec.MediaTypeImageLayerNonDistributableZstd: //nolint:staticcheck // still found in images
		return zstded, nil
	}
	if strings.HasSuffix(mediaType, "+encrypted") {
		return 0, fmt.Errorf("encrypted layer %q: %w", mediaType, errdefs.ErrNotImplemented)
	}
	return 0, fmt.Errorf("layer media type %q: %w", mediaType, errdefs.ErrNotImplemented)
}

// decompress wraps r by compression. klauspost/compress decodes gzip
// about twice as fast as compress/gzip and zstd in pure Go with its own
// concurrent block decoding; both are widely used (containerd, moby).
func decompress(c compression, r io.Reader) (io.ReadCloser, error) {
	switch c {
	case gzipped:
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w: %w", err, errdefs.ErrInvalidArgument)
		}
		return zr, nil
	case zstded:
		zr, err := zstd.NewReader(r, zstd.WithDecoderMaxWindow(zstdMaxWindow))
		if err != nil {
			return nil, err
		}
		return zr.IOReadCloser(), nil
	}
	return io.NopCloser(r), nil
}

// zstdMaxWindow bounds the memory a zstd frame may ask for: 128 MiB, the
// largest window of zstd --long.
const zstdMaxWindow = 1 << 27
