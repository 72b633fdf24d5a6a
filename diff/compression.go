package diff

import (
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/errdefs"
)

// Compression is how a layer blob is compressed.
type Compression string

// The compressions of layers berth reads and writes.
const (
	Uncompressed Compression = "uncompressed"
	Gzip         Compression = "gzip"
	Zstd         Compression = "zstd"
)

// ParseCompression parses the name of a compression, as users write it
// ("gzip", "zstd", "uncompressed" or "none").
func ParseCompression(s string) (Compression, error) {
	switch s {
	case "gzip":
		return Gzip, nil
	case "zstd":
		return Zstd, nil
	case "uncompressed", "none":
		return Uncompressed, nil
	}
	return "", fmt.Errorf("compression %q: want gzip, zstd or uncompressed: %w", s, errdefs.ErrInvalidArgument)
}

// LayerCompression returns the compression of a layer of mediaType;
// ErrNotImplemented for a media type that is no layer berth can read.
func LayerCompression(mediaType string) (Compression, error) {
	c, err := layerCompression(mediaType)
	if err != nil {
		return "", err
	}
	switch c {
	case gzipped:
		return Gzip, nil
	case zstded:
		return Zstd, nil
	}
	return Uncompressed, nil
}

// MediaType is the OCI media type of a layer of compression c.
func (c Compression) MediaType() string {
	switch c {
	case Gzip:
		return ocispec.MediaTypeImageLayerGzip
	case Zstd:
		return ocispec.MediaTypeImageLayerZstd
	}
	return ocispec.MediaTypeImageLayer
}

// Decompress returns the uncompressed tar of a layer blob of mediaType
// read from r.
func Decompress(mediaType string, r io.Reader) (io.ReadCloser, error) {
	c, err := layerCompression(mediaType)
	if err != nil {
		return nil, err
	}
	return decompress(c, r)
}

// Compress returns a writer that compresses what is written to it by c
// into w; its Close ends the stream (and does not close w).
func Compress(c Compression, w io.Writer) (io.WriteCloser, error) {
	switch c {
	case Gzip:
		return gzip.NewWriter(w), nil
	case Zstd:
		// Default level, one encoder goroutine per CPU: zstd's speed at
		// that level is what makes it worth choosing over gzip.
		return zstd.NewWriter(w)
	case Uncompressed:
		return nopWriteCloser{w}, nil
	}
	return nil, fmt.Errorf("compression %q: %w", c, errdefs.ErrInvalidArgument)
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
