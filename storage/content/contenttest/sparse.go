package contenttest

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/content"
)

// PlantSparseBlob puts a sparse file of size bytes into the local
// store (local.NewStore) at root, under a digest of its own (the store verifies bytes when
// it commits them, not when it reads them), as a multi-GB layer stored
// earlier would be, without writing gigabytes.
func PlantSparseBlob(t testing.TB, root string, size int64) digest.Digest {
	t.Helper()
	dgst := digest.FromString("a large layer stored earlier")
	path := filepath.Join(root, "blobs", "sha256", dgst.Encoded())
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return dgst
}

// ReadAll reads the whole blob desc from p, whatever its size: tests
// compare layers larger than content.ReadBlob reads.
func ReadAll(ctx context.Context, p content.Provider, desc ocispec.Descriptor) (_ []byte, err error) {
	ra, err := p.ReaderAt(ctx, desc)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, ra.Close()) }()
	return io.ReadAll(content.NewReader(ra))
}
