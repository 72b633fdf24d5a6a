package transfer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/distribution"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/storage/content/local"
)

func blobDesc(data []byte) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromBytes(data), Size: int64(len(data))}
}

func readAll(t *testing.T, ra content.ReaderAt) []byte {
	t.Helper()
	defer ra.Close()
	data, err := io.ReadAll(io.NewSectionReader(ra, 0, ra.Size()))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// openAsync opens desc on another goroutine and hands back the result.
func openAsync(ctx context.Context, a *arriving, desc ocispec.Descriptor) <-chan any {
	out := make(chan any, 1)
	go func() {
		ra, err := a.ReaderAt(ctx, desc)
		if err != nil {
			out <- err
			return
		}
		out <- ra
	}()
	return out
}

func TestArrivingWaitsForTheCommit(t *testing.T) {
	ctx := context.Background()
	store, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := newArriving(store)
	layer := []byte("layer bytes")
	desc := blobDesc(layer)
	got := openAsync(ctx, a, desc)

	// In the store but not reported yet: the pull may not hold it under
	// its lease, so the reader still waits.
	if err := content.WriteBlob(ctx, store, "l", bytes.NewReader(layer), desc); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		t.Fatalf("opened before the pull reported the blob: %v", r)
	case <-time.After(50 * time.Millisecond):
	}
	a.observe(distribution.Progress{Digest: desc.Digest, Status: distribution.StatusDone})
	switch r := (<-got).(type) {
	case content.ReaderAt:
		if data := readAll(t, r); !bytes.Equal(data, layer) {
			t.Fatalf("read %q, want %q", data, layer)
		}
	default:
		t.Fatalf("open after the commit: %v", r)
	}
	// Reported already: opens at once.
	ra, err := a.ReaderAt(ctx, desc)
	if err != nil {
		t.Fatal(err)
	}
	ra.Close()
}

func TestArrivingServesFetchedManifests(t *testing.T) {
	ctx := context.Background()
	store, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := newArriving(store)
	index, manifest := []byte(`{"index":1}`), []byte(`{"manifest":1}`)
	idxDesc, mfDesc := blobDesc(index), blobDesc(manifest)
	got := openAsync(ctx, a, mfDesc) // asked for before the pull fetched it
	a.fetched(idxDesc, index)
	a.fetched(mfDesc, manifest)
	root, err := a.root(ctx)
	if err != nil || root.Digest != idxDesc.Digest {
		t.Fatalf("root %v, %v; want the first fetched, %s", root.Digest, err, idxDesc.Digest)
	}
	switch r := (<-got).(type) {
	case content.ReaderAt:
		if data := readAll(t, r); !bytes.Equal(data, manifest) {
			t.Fatalf("read %q, want %q", data, manifest)
		}
	default:
		t.Fatalf("open a fetched manifest: %v", r)
	}
}

func TestArrivingEndsWithThePull(t *testing.T) {
	ctx := context.Background()
	store, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := newArriving(store)
	got := openAsync(ctx, a, blobDesc([]byte("never")))
	pullErr := errors.New("registry gone")
	a.end(pullErr)
	if err, ok := (<-got).(error); !ok || !errors.Is(err, pullErr) {
		t.Fatalf("open after a failed pull: %v, want the pull's error", err)
	}
	if _, err := a.root(ctx); !errors.Is(err, pullErr) {
		t.Fatalf("root after a failed pull: %v, want the pull's error", err)
	}

	b := newArriving(store)
	b.end(nil)
	if _, err := b.ReaderAt(ctx, blobDesc([]byte("absent"))); !errdefs.IsNotFound(err) {
		t.Fatalf("open what a finished pull did not bring: %v, want not found", err)
	}
}
