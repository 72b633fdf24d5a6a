package transfer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/distribution"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/storage/content/local"
	"github.com/berthrt/berth/unpack"
)

// testArriving returns an arriving over a local store of the test's own.
func testArriving(t *testing.T) *arriving {
	t.Helper()
	store, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return newArriving(store)
}

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
	a := testArriving(t)
	layer := []byte("layer bytes")
	desc := blobDesc(layer)
	got := openAsync(ctx, a, desc)

	// In the store but not reported yet: the pull may not hold it under
	// its lease, so the reader still waits.
	if err := content.WriteBlob(ctx, a.store, "l", bytes.NewReader(layer), desc); err != nil {
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
	a := testArriving(t)
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
	a := testArriving(t)
	got := openAsync(ctx, a, blobDesc([]byte("never")))
	pullErr := errors.New("registry gone")
	a.end(pullErr)
	if err, ok := (<-got).(error); !ok || !errors.Is(err, pullErr) {
		t.Fatalf("open after a failed pull: %v, want the pull's error", err)
	}
	if _, err := a.root(ctx); !errors.Is(err, pullErr) {
		t.Fatalf("root after a failed pull: %v, want the pull's error", err)
	}

	b := newArriving(a.store)
	b.end(nil)
	if _, err := b.ReaderAt(ctx, blobDesc([]byte("absent"))); !errdefs.IsNotFound(err) {
		t.Fatalf("open what a finished pull did not bring: %v, want not found", err)
	}
}

// openPullWriter opens, through a's pullStore, the Writer the pull would
// open for desc.
func openPullWriter(t *testing.T, a *arriving, desc ocispec.Descriptor) content.Writer {
	t.Helper()
	w, err := a.pullStore().Writer(context.Background(), content.WithRef("pull-"+desc.Digest.String()), content.WithDescriptor(desc))
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// openReader opens a reader of desc's blob from a, closed when the test
// ends.
func openReader(t *testing.T, a *arriving, desc ocispec.Descriptor) content.ReaderAt {
	t.Helper()
	ra, err := a.ReaderAt(context.Background(), desc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ra.Close() })
	return ra
}

// readAsync reads n bytes of ra at off on another goroutine.
func readAsync(ra io.ReaderAt, n int, off int64) <-chan any {
	out := make(chan any, 1)
	go func() {
		p := make([]byte, n)
		m, err := ra.ReadAt(p, off)
		if err != nil && !(errors.Is(err, io.EOF) && m == n) {
			out <- err
			return
		}
		out <- p[:m]
	}()
	return out
}

// settleAsync settles desc on another goroutine: whether bytes were
// handed out before the commit, or the error.
func settleAsync(a *arriving, desc ocispec.Descriptor) <-chan any {
	out := make(chan any, 1)
	go func() {
		unverified, err := a.Settle(context.Background(), desc)
		if err != nil {
			out <- err
			return
		}
		out <- unverified
	}()
	return out
}

// requirePending checks that nothing came on c yet.
func requirePending(t *testing.T, c <-chan any, what string) {
	t.Helper()
	select {
	case r := <-c:
		t.Fatalf("%s: %v, want it to wait", what, r)
	case <-time.After(50 * time.Millisecond):
	}
}

func requireBytes(t *testing.T, c <-chan any, want []byte, what string) {
	t.Helper()
	select {
	case r := <-c:
		if got, ok := r.([]byte); !ok || !bytes.Equal(got, want) {
			t.Fatalf("%s: %v, want %q", what, r, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: still waiting", what)
	}
}

func requireError(t *testing.T, c <-chan any, want error, what string) {
	t.Helper()
	select {
	case r := <-c:
		if err, ok := r.(error); !ok || !errors.Is(err, want) {
			t.Fatalf("%s: %v, want %v", what, r, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: still waiting, want %v", what, want)
	}
}

// TestArrivingStreamsTheIngest reads a blob while the pull writes it:
// the bytes written can be read at once, more as they come, and the
// last one only once the commit has checked the digest.
func TestArrivingStreamsTheIngest(t *testing.T) {
	ctx := context.Background()
	a := testArriving(t)
	layer := []byte("0123456789abcdef")
	desc := blobDesc(layer)
	opened := openAsync(ctx, a, desc)
	requirePending(t, opened, "open before the pull began the blob")

	w := openPullWriter(t, a, desc)
	defer w.Close()
	var ra content.ReaderAt
	switch r := (<-opened).(type) {
	case content.ReaderAt:
		ra = r
	default:
		t.Fatalf("open once the pull writes the blob: %v", r)
	}
	defer ra.Close()
	if ra.Size() != desc.Size {
		t.Fatalf("size %d, want %d", ra.Size(), desc.Size)
	}
	first := readAsync(ra, 8, 0)
	requirePending(t, first, "read before anything was written")
	if _, err := w.Write(layer[:10]); err != nil {
		t.Fatal(err)
	}
	requireBytes(t, first, layer[:8], "the first bytes once written")

	// The rest: all of it written but not committed, the last byte waits.
	rest := readAsync(ra, 8, 8)
	if _, err := w.Write(layer[10:]); err != nil {
		t.Fatal(err)
	}
	requirePending(t, rest, "read of the last byte before the commit")
	settled := settleAsync(a, desc)
	requirePending(t, settled, "settle before the commit")
	if err := w.Commit(ctx, desc.Size, desc.Digest); err != nil {
		t.Fatal(err)
	}
	requireBytes(t, rest, layer[8:], "the rest once committed")
	if r := <-settled; r != true {
		t.Fatalf("settle after the commit: %v, want true (bytes were handed out before it)", r)
	}
	if data := readAll(t, ra); !bytes.Equal(data, layer) {
		t.Fatalf("read %q after the commit, want %q", data, layer)
	}
}

// TestArrivingNeverHandsOutABadBlob writes a blob whose bytes are not
// its digest's: the reader gets all of it but the last byte, then the
// pull's error, never the end.
func TestArrivingNeverHandsOutABadBlob(t *testing.T) {
	ctx := context.Background()
	a := testArriving(t)
	layer := []byte("the layer's true bytes")
	desc := blobDesc(layer)
	w := openPullWriter(t, a, desc)
	ra := openReader(t, a, desc)
	bad := bytes.ToUpper(layer)
	if _, err := w.Write(bad); err != nil {
		t.Fatal(err)
	}
	requireBytes(t, readAsync(ra, len(bad)-1, 0), bad[:len(bad)-1], "all but the last byte")
	whole := readAsync(ra, len(bad), 0)
	cerr := w.Commit(ctx, desc.Size, desc.Digest)
	if !errdefs.IsFailedPrecondition(cerr) {
		t.Fatalf("commit of the wrong bytes: %v, want failed precondition", cerr)
	}
	w.Close()
	requirePending(t, whole, "read of the whole blob after a failed commit")
	settled := settleAsync(a, desc)
	requirePending(t, settled, "settle before the pull ended")
	a.end(cerr)
	requireError(t, whole, errdefs.ErrFailedPrecondition, "read after the pull failed")
	requireError(t, settled, errdefs.ErrFailedPrecondition, "settle after the pull failed")
}

// TestArrivingRefetched has the pull start a blob over while it is read:
// a reader that was handed bytes from before the cut fails with
// unpack.ErrRefetched; one that was not reads on; and one opened after a
// resume that kept what it was handed reads the rest.
func TestArrivingRefetched(t *testing.T) {
	ctx := context.Background()
	a := testArriving(t)
	layer := []byte("0123456789abcdefghij")
	desc := blobDesc(layer)
	w := openPullWriter(t, a, desc)
	early := openReader(t, a, desc)
	late := openReader(t, a, desc)
	if _, err := w.Write(layer[:12]); err != nil {
		t.Fatal(err)
	}
	requireBytes(t, readAsync(early, 10, 0), layer[:10], "early read")
	requireBytes(t, readAsync(late, 4, 0), layer[:4], "late read")

	// The connection drops; the next Writer resumes at 12: both go on.
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	next := readAsync(early, 2, 10)
	requirePending(t, next, "read past what was written, between Writers")
	w = openPullWriter(t, a, desc)
	defer w.Close()
	requireBytes(t, next, layer[10:12], "read of what the first Writer wrote, once the next opened")

	// The registry ignores the Range: the pull starts the blob again.
	if err := w.Truncate(6); err != nil {
		t.Fatal(err)
	}
	requireError(t, readAsync(early, 2, 12), unpack.ErrRefetched, "read after a cut below what was handed out")
	rest := readAsync(late, len(layer)-4, 4)
	if _, err := w.Write(layer[6:]); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx, desc.Size, desc.Digest); err != nil {
		t.Fatal(err)
	}
	requireBytes(t, rest, layer[4:], "read of a reader that was handed nothing past the cut")
}

// TestArrivingCommittedElsewhere: the blob is committed, but not by this
// pull's Writer (another writer's ingest, or it was there already): a
// reader that was handed bytes of this pull's ingest fails with
// ErrRefetched, since they were never checked; one that was not reads the
// store's blob.
func TestArrivingCommittedElsewhere(t *testing.T) {
	ctx := context.Background()
	a := testArriving(t)
	layer := []byte("0123456789")
	desc := blobDesc(layer)
	w := openPullWriter(t, a, desc)
	defer w.Close()
	handed := openReader(t, a, desc)
	fresh := openReader(t, a, desc)
	if _, err := w.Write(layer[:5]); err != nil {
		t.Fatal(err)
	}
	requireBytes(t, readAsync(handed, 4, 0), layer[:4], "read of the ingest")
	if err := content.WriteBlob(ctx, a.store, "elsewhere", bytes.NewReader(layer), desc); err != nil {
		t.Fatal(err)
	}
	a.observe(distribution.Progress{Digest: desc.Digest, Status: distribution.StatusExists})
	requireError(t, readAsync(handed, 6, 4), unpack.ErrRefetched, "read on after a commit by another writer")
	requireBytes(t, readAsync(fresh, len(layer), 0), layer, "read of a reader handed nothing before")
}

// TestArrivingCloseEndsAWait: a reader closed while it waits for bytes
// returns at once, not when the pull writes more.
func TestArrivingCloseEndsAWait(t *testing.T) {
	ctx := context.Background()
	a := testArriving(t)
	desc := blobDesc([]byte("never written"))
	w := openPullWriter(t, a, desc)
	defer w.Close()
	ra, err := a.ReaderAt(ctx, desc)
	if err != nil {
		t.Fatal(err)
	}
	waiting := readAsync(ra, 4, 0)
	requirePending(t, waiting, "read of bytes not written")
	if err := ra.Close(); err != nil {
		t.Fatal(err)
	}
	requireError(t, waiting, os.ErrClosed, "read waiting when closed")
}
