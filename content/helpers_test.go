package content_test

import (
	"context"
	"runtime"
	"strconv"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/storage/content/contenttest"
	"github.com/berthrt/berth/storage/content/local"
)

// TestReadBlobBoundedByDescriptor: a descriptor that names a stored
// 8 GiB blob (a sparse file) with a size of 2 is refused with both sizes
// named, without allocating the stored size; one larger than
// MaxReadBlobSize is refused before the store is asked.
func TestReadBlobBoundedByDescriptor(t *testing.T) {
	root := t.TempDir()
	s, err := local.NewStore(root)
	if err != nil {
		t.Fatal(err)
	}
	const stored = 8 << 30
	dgst := contenttest.PlantSparseBlob(t, root, stored)
	ctx := context.Background()

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = content.ReadBlob(ctx, s, ocispec.Descriptor{Digest: dgst, Size: 2})
	runtime.ReadMemStats(&after)
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), strconv.Itoa(stored)) || !strings.Contains(err.Error(), "says 2") {
		t.Fatalf("ReadBlob of a %d-byte blob as 2 bytes: %v, want failed precondition naming both sizes", stored, err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Fatalf("ReadBlob allocated %d bytes refusing a size mismatch", grew)
	}

	_, err = content.ReadBlob(ctx, s, ocispec.Descriptor{Digest: dgst, Size: stored})
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), strconv.Itoa(content.MaxReadBlobSize)) {
		t.Fatalf("ReadBlob of %d bytes: %v, want invalid argument naming the limit", stored, err)
	}
}
