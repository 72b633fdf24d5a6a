// Package contenttest is the test suite every content.Store runs: the
// local store, the namespaced view of package metadata, and the client
// over the content API.
package contenttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/namespaces"
)

// Namespaces of the suite's calls: every test acts in NamespaceA; the
// isolation test also in NamespaceB.
const (
	NamespaceA = "suite-a"
	NamespaceB = "suite-b"
)

// Options says what the store under test promises beyond Store.
type Options struct {
	// Namespaced: a blob or ingest is visible only in the namespace of the
	// context it was made with.
	Namespaced bool
	// Reread: Writers are content.Rereaders.
	Reread bool
}

// Run runs the suite; newStore makes a fresh, empty store for each test.
func Run(t *testing.T, newStore func(t *testing.T) content.Store, opts Options) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s content.Store)
	}{
		{"WriteCommitRead", testWriteCommitRead},
		{"CommitLabels", testCommitLabels},
		{"Walk", testWalk},
		{"Update", testUpdate},
		{"Delete", testDelete},
		{"Resume", testResume},
		{"Truncate", testTruncate},
		{"ConcurrentWriter", testConcurrentWriter},
		{"CommitShort", testCommitShort},
		{"CommitTooLong", testCommitTooLong},
		{"CommitWrongDigest", testCommitWrongDigest},
		{"AlreadyExists", testAlreadyExists},
		{"StatusesAndAbort", testStatusesAndAbort},
		{"HostileRefs", testHostileRefs},
		{"BadInput", testBadInput},
		{"LargeBlob", testLargeBlob},
	}
	if opts.Namespaced {
		tests = append(tests, struct {
			name string
			fn   func(t *testing.T, s content.Store)
		}{"NamespaceIsolation", testNamespaceIsolation})
	}
	if opts.Reread {
		tests = append(tests, struct {
			name string
			fn   func(t *testing.T, s content.Store)
		}{"Reread", testReread})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

// ctxIn returns a context in namespace ns that ends with the test.
func ctxIn(t *testing.T, ns string) context.Context {
	return namespaces.WithNamespace(t.Context(), ns)
}

// blob returns n random bytes and their descriptor.
func blob(t *testing.T, n int) ([]byte, ocispec.Descriptor) {
	t.Helper()
	p := make([]byte, n)
	if _, err := rand.Read(p); err != nil {
		t.Fatal(err)
	}
	return p, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromBytes(p), Size: int64(n)}
}

// commit writes p as desc under ref and requires success.
func commit(t *testing.T, ctx context.Context, s content.Store, ref string, p []byte, desc ocispec.Descriptor, opts ...content.Opt) {
	t.Helper()
	if err := content.WriteBlob(ctx, s, ref, bytes.NewReader(p), desc, opts...); err != nil {
		t.Fatalf("WriteBlob %q: %v", ref, err)
	}
}

func requireClass(t *testing.T, err, class error, what string) {
	t.Helper()
	if !errors.Is(err, class) {
		t.Fatalf("%s: error = %v, want class %q", what, err, class)
	}
}

func requireNoErr(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// requireBlob requires that desc reads back as p, whole and in pieces.
func requireBlob(t *testing.T, ctx context.Context, s content.Store, desc ocispec.Descriptor, p []byte) {
	t.Helper()
	got, err := ReadAll(ctx, s, desc)
	requireNoErr(t, err, "ReadAll")
	if !bytes.Equal(got, p) {
		t.Fatalf("ReadBlob %s: %d bytes differ from the %d written", desc.Digest, len(got), len(p))
	}
	info, err := s.Info(ctx, desc.Digest)
	requireNoErr(t, err, "Info")
	if info.Digest != desc.Digest || info.Size != int64(len(p)) || info.CreatedAt.IsZero() || info.UpdatedAt.IsZero() {
		t.Fatalf("Info = %+v, want digest %s, size %d and times", info, desc.Digest, len(p))
	}
}

// requireNoIngest requires that ref has no ingest.
func requireNoIngest(t *testing.T, ctx context.Context, s content.Store, ref string) {
	t.Helper()
	_, err := s.Status(ctx, ref)
	requireClass(t, err, errdefs.ErrNotFound, "Status of "+ref)
}

func testWriteCommitRead(t *testing.T, s content.Store) {
	ctx := ctxIn(t, NamespaceA)
	p, desc := blob(t, 3000)
	before := time.Now().Add(-time.Second)
	commit(t, ctx, s, "write-1", p, desc)
	requireBlob(t, ctx, s, desc, p)
	requireNoIngest(t, ctx, s, "write-1")

	info, err := s.Info(ctx, desc.Digest)
	requireNoErr(t, err, "Info")
	if info.CreatedAt.Before(before) || info.CreatedAt.After(time.Now().Add(time.Second)) {
		t.Errorf("CreatedAt %v is not about now", info.CreatedAt)
	}

	ra, err := s.ReaderAt(ctx, desc)
	requireNoErr(t, err, "ReaderAt")
	defer ra.Close()
	if ra.Size() != desc.Size {
		t.Fatalf("Size = %d, want %d", ra.Size(), desc.Size)
	}
	buf := make([]byte, 100)
	n, err := ra.ReadAt(buf, 1000)
	if n != 100 || err != nil || !bytes.Equal(buf, p[1000:1100]) {
		t.Fatalf("ReadAt(100 at 1000) = %d, %v; or the bytes differ", n, err)
	}
	n, err = ra.ReadAt(buf, desc.Size-10)
	if n != 10 || err != io.EOF || !bytes.Equal(buf[:10], p[len(p)-10:]) {
		t.Fatalf("ReadAt across the end = %d, %v; want 10, io.EOF", n, err)
	}
	if n, err = ra.ReadAt(buf, desc.Size); n != 0 || err != io.EOF {
		t.Fatalf("ReadAt at the end = %d, %v; want 0, io.EOF", n, err)
	}

	// An empty blob is a blob too.
	empty := ocispec.Descriptor{Digest: digest.FromBytes(nil), Size: 0}
	commit(t, ctx, s, "write-empty", nil, empty)
	requireBlob(t, ctx, s, empty, nil)
}

func testCommitLabels(t *testing.T, s content.Store) {
	ctx := ctxIn(t, NamespaceA)
	p, desc := blob(t, 10)
	commit(t, ctx, s, "labels-1", p, desc, content.WithLabels(map[string]string{"a": "1", "empty": ""}))
	info, err := s.Info(ctx, desc.Digest)
	requireNoErr(t, err, "Info")
	if len(info.Labels) != 1 || info.Labels["a"] != "1" {
		t.Fatalf("Labels = %v, want a=1", info.Labels)
	}

	// Labels out of bounds refuse the commit and keep the ingest.
	q, qdesc := blob(t, 10)
	w, err := s.Writer(ctx, content.WithRef("labels-2"), content.WithDescriptor(qdesc))
	requireNoErr(t, err, "Writer")
	defer w.Close()
	_, err = w.Write(q)
	requireNoErr(t, err, "Write")
	err = w.Commit(ctx, qdesc.Size, qdesc.Digest, content.WithLabels(map[string]string{"k": strings.Repeat("v", content.MaxLabelSize)}))
	requireClass(t, err, errdefs.ErrInvalidArgument, "Commit with a huge label")
	_, err = s.Info(ctx, qdesc.Digest)
	requireClass(t, err, errdefs.ErrNotFound, "Info after a refused commit")
	requireNoErr(t, w.Commit(ctx, qdesc.Size, qdesc.Digest), "Commit without labels")
}

func testWalk(t *testing.T, s content.Store) {
	ctx := ctxIn(t, NamespaceA)
	descs := map[digest.Digest]bool{}
	var web ocispec.Descriptor
	for i, role := range []string{"web", "db", ""} {
		p, desc := blob(t, 100+i)
		var labels map[string]string
		if role != "" {
			labels = map[string]string{"role": role}
		}
		commit(t, ctx, s, "walk-"+role, p, desc, content.WithLabels(labels))
		descs[desc.Digest] = true
		if role == "web" {
			web = desc
		}
	}
	walk := func(fs ...string) []content.Info {
		t.Helper()
		var infos []content.Info
		requireNoErr(t, s.Walk(ctx, func(info content.Info) error {
			infos = append(infos, info)
			return nil
		}, fs...), "Walk")
		return infos
	}
	all := walk()
	if len(all) != 3 {
		t.Fatalf("Walk: %d blobs, want 3", len(all))
	}
	for _, info := range all {
		if !descs[info.Digest] {
			t.Errorf("Walk: unexpected %s", info.Digest)
		}
	}
	if got := walk(`labels.role==web`); len(got) != 1 || got[0].Digest != web.Digest {
		t.Errorf("Walk labels.role==web = %v, want %s", got, web.Digest)
	}
	if got := walk(`labels.role`); len(got) != 2 {
		t.Errorf("Walk labels.role: %d blobs, want 2", len(got))
	}
	if got := walk(`digest==`+web.Digest.String(), `labels.role==db`); len(got) != 2 {
		t.Errorf("Walk digest==…, labels.role==db: %d blobs, want 2", len(got))
	}
	if got := walk(`size==100`); len(got) != 1 || got[0].Digest != web.Digest {
		t.Errorf("Walk size==100 = %v, want %s", got, web.Digest)
	}
	stop := errors.New("stop")
	n := 0
	err := s.Walk(ctx, func(content.Info) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("Walk whose fn fails = %v after %d calls, want stop after 1", err, n)
	}
	requireClass(t, s.Walk(ctx, func(content.Info) error { return nil }, `labels.role==`), errdefs.ErrInvalidArgument, "Walk with a bad filter")
}

func testUpdate(t *testing.T, s content.Store) {
	ctx := ctxIn(t, NamespaceA)
	p, desc := blob(t, 10)
	commit(t, ctx, s, "update-1", p, desc, content.WithLabels(map[string]string{"a": "1", "b": "2"}))
	before, err := s.Info(ctx, desc.Digest)
	requireNoErr(t, err, "Info")

	info, err := s.Update(ctx, content.Info{Digest: desc.Digest, Labels: map[string]string{"b": "3", "c": "4"}}, "labels.b")
	requireNoErr(t, err, "Update labels.b")
	if len(info.Labels) != 2 || info.Labels["a"] != "1" || info.Labels["b"] != "3" {
		t.Fatalf("after labels.b: %v, want a=1 b=3", info.Labels)
	}
	if info.UpdatedAt.Before(before.UpdatedAt) || !info.CreatedAt.Equal(before.CreatedAt) {
		t.Errorf("times after Update: %v/%v, before %v/%v", info.CreatedAt, info.UpdatedAt, before.CreatedAt, before.UpdatedAt)
	}
	info, err = s.Update(ctx, content.Info{Digest: desc.Digest}, "labels.a")
	requireNoErr(t, err, "Update labels.a to nothing")
	if len(info.Labels) != 1 || info.Labels["b"] != "3" {
		t.Fatalf("after removing a: %v, want b=3", info.Labels)
	}
	info, err = s.Update(ctx, content.Info{Digest: desc.Digest, Labels: map[string]string{"z": "9"}})
	requireNoErr(t, err, "Update all")
	if len(info.Labels) != 1 || info.Labels["z"] != "9" {
		t.Fatalf("after replacing: %v, want z=9", info.Labels)
	}
	got, err := s.Info(ctx, desc.Digest)
	requireNoErr(t, err, "Info")
	if len(got.Labels) != 1 || got.Labels["z"] != "9" {
		t.Fatalf("Info after Update: %v, want z=9", got.Labels)
	}

	_, err = s.Update(ctx, content.Info{Digest: desc.Digest, Size: 1}, "size")
	requireClass(t, err, errdefs.ErrInvalidArgument, "Update size")
	many := map[string]string{}
	for i := range content.MaxLabels + 1 {
		many[strings.Repeat("k", i+1)] = "v"
	}
	_, err = s.Update(ctx, content.Info{Digest: desc.Digest, Labels: many})
	requireClass(t, err, errdefs.ErrInvalidArgument, "Update with too many labels")
	_, err = s.Update(ctx, content.Info{Digest: digest.FromString("absent"), Labels: map[string]string{"a": "1"}})
	requireClass(t, err, errdefs.ErrNotFound, "Update of an absent blob")
}

func testDelete(t *testing.T, s content.Store) {
	ctx := ctxIn(t, NamespaceA)
	p, desc := blob(t, 10)
	commit(t, ctx, s, "delete-1", p, desc)
	requireNoErr(t, s.Delete(ctx, desc.Digest), "Delete")
	_, err := s.Info(ctx, desc.Digest)
	requireClass(t, err, errdefs.ErrNotFound, "Info after Delete")
	_, err = s.ReaderAt(ctx, desc)
	requireClass(t, err, errdefs.ErrNotFound, "ReaderAt after Delete")
	requireClass(t, s.Delete(ctx, desc.Digest), errdefs.ErrNotFound, "Delete again")
	// It can be written again.
	commit(t, ctx, s, "delete-2", p, desc)
	requireBlob(t, ctx, s, desc, p)
}

func testResume(t *testing.T, s content.Store) {
	ctx := ctxIn(t, NamespaceA)
	p, desc := blob(t, 5000)
	w, err := s.Writer(ctx, content.WithRef("resume-1"), content.WithDescriptor(desc))
	requireNoErr(t, err, "Writer")
	_, err = w.Write(p[:2000])
	requireNoErr(t, err, "Write")
	requireNoErr(t, w.Close(), "Close midway")

	st, err := s.Status(ctx, "resume-1")
	requireNoErr(t, err, "Status")
	if st.Ref != "resume-1" || st.Offset != 2000 || st.Total != desc.Size || st.Expected != desc.Digest ||
		st.StartedAt.IsZero() || st.UpdatedAt.Before(st.StartedAt) {
		t.Fatalf("Status = %+v, want offset 2000, total %d, expected %s, times", st, desc.Size, desc.Digest)
	}

	// A second Writer resumes at the offset; WriteBlob skips what is
	// there already.
	w, err = s.Writer(ctx, content.WithRef("resume-1"), content.WithDescriptor(desc))
	requireNoErr(t, err, "Writer to resume")
	st, err = w.Status()
	requireNoErr(t, err, "Writer.Status")
	if st.Offset != 2000 || w.Digest() != digest.FromBytes(p[:2000]) {
		t.Fatalf("resumed at %d with digest %s, want 2000 and the digest of the first 2000 bytes", st.Offset, w.Digest())
	}
	_, err = w.Write(p[2000:4000])
	requireNoErr(t, err, "Write")
	requireNoErr(t, w.Close(), "Close")
	commit(t, ctx, s, "resume-1", p, desc)
	requireBlob(t, ctx, s, desc, p)
	requireNoIngest(t, ctx, s, "resume-1")

	// A resumed ingest keeps what it was started for.
	q, qdesc := blob(t, 100)
	w, err = s.Writer(ctx, content.WithRef("resume-2"), content.WithDescriptor(qdesc))
	requireNoErr(t, err, "Writer")
	_, err = w.Write(q[:10])
	requireNoErr(t, err, "Write")
	requireNoErr(t, w.Close(), "Close")
	_, other := blob(t, 100)
	_, err = s.Writer(ctx, content.WithRef("resume-2"), content.WithDescriptor(other))
	requireClass(t, err, errdefs.ErrFailedPrecondition, "Writer resuming for another blob")
	w, err = s.Writer(ctx, content.WithRef("resume-2"))
	requireNoErr(t, err, "Writer resuming without a descriptor")
	st, err = w.Status()
	requireNoErr(t, err, "Writer.Status")
	if st.Expected != qdesc.Digest || st.Total != qdesc.Size {
		t.Fatalf("resumed Status = %+v, want the first descriptor", st)
	}
	requireNoErr(t, w.Close(), "Close")
}

func testTruncate(t *testing.T, s content.Store) {
	ctx := ctxIn(t, NamespaceA)
	p, desc := blob(t, 100)
	w, err := s.Writer(ctx, content.WithRef("truncate-1"), content.WithDescriptor(desc))
	requireNoErr(t, err, "Writer")
	defer w.Close()
	_, err = w.Write(p[:50])
	requireNoErr(t, err, "Write")
	requireClass(t, w.Truncate(60), errdefs.ErrInvalidArgument, "Truncate past the offset")
	requireNoErr(t, w.Truncate(20), "Truncate(20)")
	if st, err := w.Status(); err != nil || st.Offset != 20 || w.Digest() != digest.FromBytes(p[:20]) {
		t.Fatalf("after Truncate(20): %+v, %v, digest %s", st, err, w.Digest())
	}
	_, err = w.Write(p[20:])
	requireNoErr(t, err, "Write")
	requireNoErr(t, w.Commit(ctx, desc.Size, desc.Digest), "Commit")
	requireBlob(t, ctx, s, desc, p)
}

// testReread reads an ingest back while it is written, across a
// Truncate and a resume, and not once its Writer is closed.
func testReread(t *testing.T, s content.Store) {
	ctx := ctxIn(t, NamespaceA)
	p, desc := blob(t, 100)
	w, err := s.Writer(ctx, content.WithRef("reread-1"), content.WithDescriptor(desc))
	requireNoErr(t, err, "Writer")
	defer w.Close()
	rr, ok := w.(content.Rereader)
	if !ok {
		t.Fatalf("Writer %T is not a content.Rereader", w)
	}
	ra := rr.Reread()
	if ra == nil {
		t.Fatal("Reread of an open Writer: nil")
	}
	requireRead := func(ra io.ReaderAt, off int64, want []byte, what string) {
		t.Helper()
		got := make([]byte, len(want))
		if n, err := ra.ReadAt(got, off); n != len(want) || !bytes.Equal(got, want) {
			t.Fatalf("%s: read %q, %v; want %q", what, got[:n], err, want)
		}
	}
	_, err = w.Write(p[:50])
	requireNoErr(t, err, "Write")
	requireRead(ra, 10, p[10:50], "reread of what was written")
	requireNoErr(t, w.Truncate(20), "Truncate(20)")
	_, err = w.Write(p[20:60])
	requireNoErr(t, err, "Write")
	requireRead(ra, 0, p[:60], "reread after a Truncate")
	requireNoErr(t, w.Close(), "Close")
	if n, err := ra.ReadAt(make([]byte, 10), 0); err == nil {
		t.Fatalf("reread after Close: %d bytes, want an error", n)
	}
	w, err = s.Writer(ctx, content.WithRef("reread-1"), content.WithDescriptor(desc))
	requireNoErr(t, err, "Writer (resume)")
	defer w.Close()
	ra = w.(content.Rereader).Reread()
	_, err = w.Write(p[60:])
	requireNoErr(t, err, "Write")
	requireRead(ra, 0, p, "reread of a resumed ingest")
	requireNoErr(t, w.Commit(ctx, desc.Size, desc.Digest), "Commit")
	requireBlob(t, ctx, s, desc, p)
}

func testConcurrentWriter(t *testing.T, s content.Store) {
	ctx := ctxIn(t, NamespaceA)
	p, desc := blob(t, 100)
	w, err := s.Writer(ctx, content.WithRef("busy-1"), content.WithDescriptor(desc))
	requireNoErr(t, err, "Writer")
	_, err = s.Writer(ctx, content.WithRef("busy-1"), content.WithDescriptor(desc))
	requireClass(t, err, errdefs.ErrUnavailable, "second Writer")
	if !strings.Contains(err.Error(), "busy-1") {
		t.Errorf("error %q does not name the ref", err)
	}
	requireClass(t, s.Abort(ctx, "busy-1"), errdefs.ErrUnavailable, "Abort while a Writer is open")
	// Another ref is not held up.
	w2, err := s.Writer(ctx, content.WithRef("busy-2"))
	requireNoErr(t, err, "Writer of another ref")
	requireNoErr(t, w2.Close(), "Close")
	requireNoErr(t, w.Close(), "Close")
	commit(t, ctx, s, "busy-1", p, desc)
	requireBlob(t, ctx, s, desc, p)
}

func testCommitShort(t *testing.T, s content.Store) {
	ctx := ctxIn(t, NamespaceA)
	p, desc := blob(t, 100)
	w, err := s.Writer(ctx, content.WithRef("short-1"))
	requireNoErr(t, err, "Writer")
	defer w.Close()
	_, err = w.Write(p[:99])
	requireNoErr(t, err, "Write")
	requireClass(t, w.Commit(ctx, desc.Size, desc.Digest), errdefs.ErrFailedPrecondition, "Commit short")
	_, err = s.Info(ctx, desc.Digest)
	requireClass(t, err, errdefs.ErrNotFound, "Info after a short commit")
	// The ingest and the Writer are kept: write the rest and commit.
	_, err = w.Write(p[99:])
	requireNoErr(t, err, "Write the rest")
	requireNoErr(t, w.Commit(ctx, desc.Size, desc.Digest), "Commit")
	requireBlob(t, ctx, s, desc, p)
	requireNoIngest(t, ctx, s, "short-1")
}

func testCommitTooLong(t *testing.T, s content.Store) {
	ctx := ctxIn(t, NamespaceA)
	p, _ := blob(t, 100)
	w, err := s.Writer(ctx, content.WithRef("long-1"))
	requireNoErr(t, err, "Writer")
	defer w.Close()
	_, err = w.Write(p)
	requireNoErr(t, err, "Write")
	requireClass(t, w.Commit(ctx, 99, ""), errdefs.ErrFailedPrecondition, "Commit with a smaller size")
	requireNoIngest(t, ctx, s, "long-1")
	requireEmpty(t, ctx, s)

	// With the size known up front, the extra bytes are refused as written.
	w, err = s.Writer(ctx, content.WithRef("long-2"), content.WithDescriptor(ocispec.Descriptor{Size: 10}))
	requireNoErr(t, err, "Writer")
	defer w.Close()
	_, err = w.Write(p[:11])
	requireClass(t, err, errdefs.ErrInvalidArgument, "Write past the expected size")
	if st, err := w.Status(); err != nil || st.Offset != 0 {
		t.Fatalf("after a refused Write: %+v, %v; want offset 0", st, err)
	}
}

func testCommitWrongDigest(t *testing.T, s content.Store) {
	ctx := ctxIn(t, NamespaceA)
	p, desc := blob(t, 100)
	_, other := blob(t, 100)
	w, err := s.Writer(ctx, content.WithRef("corrupt-1"))
	requireNoErr(t, err, "Writer")
	defer w.Close()
	_, err = w.Write(p)
	requireNoErr(t, err, "Write")
	err = w.Commit(ctx, desc.Size, other.Digest)
	requireClass(t, err, errdefs.ErrFailedPrecondition, "Commit with the wrong digest")
	if !strings.Contains(err.Error(), other.Digest.String()) {
		t.Errorf("error %q does not name the expected digest", err)
	}
	requireNoIngest(t, ctx, s, "corrupt-1")
	requireEmpty(t, ctx, s)

	// A descriptor given up front is checked the same way.
	w, err = s.Writer(ctx, content.WithRef("corrupt-2"), content.WithDescriptor(other))
	requireNoErr(t, err, "Writer")
	defer w.Close()
	_, err = w.Write(p)
	requireNoErr(t, err, "Write")
	requireClass(t, w.Commit(ctx, 0, ""), errdefs.ErrFailedPrecondition, "Commit against the descriptor's digest")
	requireClass(t, w.Commit(ctx, 0, ""), errdefs.ErrFailedPrecondition, "Commit of a discarded writer")
	requireNoIngest(t, ctx, s, "corrupt-2")
	requireEmpty(t, ctx, s)
}

// requireEmpty requires that the store holds no blob.
func requireEmpty(t *testing.T, ctx context.Context, s content.Store) {
	t.Helper()
	requireNoErr(t, s.Walk(ctx, func(info content.Info) error {
		t.Fatalf("unexpected blob %s", info.Digest)
		return nil
	}), "Walk")
}

func testAlreadyExists(t *testing.T, s content.Store) {
	ctx := ctxIn(t, NamespaceA)
	p, desc := blob(t, 100)
	commit(t, ctx, s, "exists-1", p, desc)
	before, err := s.Info(ctx, desc.Digest)
	requireNoErr(t, err, "Info")

	// A store may say so when the Writer opens; else Commit says so.
	w, err := s.Writer(ctx, content.WithRef("exists-2"), content.WithDescriptor(desc))
	if err == nil {
		_, err = w.Write(p)
		requireNoErr(t, err, "Write")
		err = w.Commit(ctx, desc.Size, desc.Digest)
		requireNoErr(t, w.Close(), "Close")
	}
	requireClass(t, err, errdefs.ErrAlreadyExists, "second commit of a digest")
	requireNoIngest(t, ctx, s, "exists-2")

	// Without a descriptor, Commit finds out.
	w, err = s.Writer(ctx, content.WithRef("exists-3"))
	requireNoErr(t, err, "Writer")
	_, err = w.Write(p)
	requireNoErr(t, err, "Write")
	requireClass(t, w.Commit(ctx, 0, ""), errdefs.ErrAlreadyExists, "Commit of existing bytes")
	requireNoErr(t, w.Close(), "Close")
	requireNoIngest(t, ctx, s, "exists-3")

	after, err := s.Info(ctx, desc.Digest)
	requireNoErr(t, err, "Info")
	if !after.CreatedAt.Equal(before.CreatedAt) {
		t.Errorf("the blob was written again: created %v, then %v", before.CreatedAt, after.CreatedAt)
	}
	requireBlob(t, ctx, s, desc, p)
}

func testStatusesAndAbort(t *testing.T, s content.Store) {
	ctx := ctxIn(t, NamespaceA)
	_, desc := blob(t, 100)
	for _, ref := range []string{"status-b", "status-a"} {
		w, err := s.Writer(ctx, content.WithRef(ref), content.WithDescriptor(desc))
		requireNoErr(t, err, "Writer")
		_, err = w.Write([]byte("abc"))
		requireNoErr(t, err, "Write")
		requireNoErr(t, w.Close(), "Close")
	}
	list, err := s.ListStatuses(ctx)
	requireNoErr(t, err, "ListStatuses")
	if len(list) != 2 || list[0].Ref != "status-a" || list[1].Ref != "status-b" || list[0].Offset != 3 {
		t.Fatalf("ListStatuses = %+v, want status-a and status-b at offset 3", list)
	}
	list, err = s.ListStatuses(ctx, `ref==status-b`)
	requireNoErr(t, err, "ListStatuses ref==status-b")
	if len(list) != 1 || list[0].Ref != "status-b" || list[0].Expected != desc.Digest {
		t.Fatalf("ListStatuses ref==status-b = %+v", list)
	}
	_, err = s.ListStatuses(ctx, `ref~=`)
	requireClass(t, err, errdefs.ErrInvalidArgument, "ListStatuses with a bad filter")

	requireNoErr(t, s.Abort(ctx, "status-a"), "Abort")
	requireNoIngest(t, ctx, s, "status-a")
	requireClass(t, s.Abort(ctx, "status-a"), errdefs.ErrNotFound, "Abort again")
	list, err = s.ListStatuses(ctx)
	requireNoErr(t, err, "ListStatuses")
	if len(list) != 1 || list[0].Ref != "status-b" {
		t.Fatalf("ListStatuses after Abort = %+v", list)
	}
	requireNoErr(t, s.Abort(ctx, "status-b"), "Abort")
}

func testHostileRefs(t *testing.T, s content.Store) {
	ctx := ctxIn(t, NamespaceA)
	// Any printable ref is a name, never a path.
	for _, ref := range []string{"../x", "../../../../etc/passwd", "/abs", "a/b/c", ".", "ünïcødé ref"} {
		p, desc := blob(t, 10)
		w, err := s.Writer(ctx, content.WithRef(ref), content.WithDescriptor(desc))
		requireNoErr(t, err, "Writer "+ref)
		_, err = w.Write(p[:5])
		requireNoErr(t, err, "Write")
		requireNoErr(t, w.Close(), "Close")
		st, err := s.Status(ctx, ref)
		requireNoErr(t, err, "Status "+ref)
		if st.Ref != ref || st.Offset != 5 {
			t.Fatalf("Status(%q) = %+v", ref, st)
		}
		list, err := s.ListStatuses(ctx, `ref==`+quote(ref))
		requireNoErr(t, err, "ListStatuses")
		if len(list) != 1 || list[0].Ref != ref {
			t.Fatalf("ListStatuses ref==%q = %+v", ref, list)
		}
		commit(t, ctx, s, ref, p, desc)
		requireBlob(t, ctx, s, desc, p)
	}
	bad := map[string]string{
		"empty":    "",
		"long":     strings.Repeat("r", content.MaxRefLength+1),
		"nul":      "a\x00b",
		"newline":  "a\nb",
		"escape":   "a\x1b[2Jb",
		"not utf8": "a\xffb",
	}
	for name, ref := range bad {
		_, err := s.Writer(ctx, content.WithRef(ref))
		requireClass(t, err, errdefs.ErrInvalidArgument, "Writer with a "+name+" ref")
		_, err = s.Status(ctx, ref)
		requireClass(t, err, errdefs.ErrInvalidArgument, "Status with a "+name+" ref")
		requireClass(t, s.Abort(ctx, ref), errdefs.ErrInvalidArgument, "Abort with a "+name+" ref")
	}
	list, err := s.ListStatuses(ctx)
	requireNoErr(t, err, "ListStatuses")
	if len(list) != 0 {
		t.Fatalf("ingests left: %+v", list)
	}
}

// quote quotes s for a filter.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

func testBadInput(t *testing.T, s content.Store) {
	ctx := ctxIn(t, NamespaceA)
	for _, dgst := range []digest.Digest{"", "sha256:abc", "md5:d41d8cd98f00b204e9800998ecf8427e", "sha256:../../etc/passwd", digest.Digest("sha256:" + strings.Repeat("A", 64))} {
		_, err := s.Info(ctx, dgst)
		requireClass(t, err, errdefs.ErrInvalidArgument, "Info "+string(dgst))
		_, err = s.ReaderAt(ctx, ocispec.Descriptor{Digest: dgst})
		requireClass(t, err, errdefs.ErrInvalidArgument, "ReaderAt "+string(dgst))
		requireClass(t, s.Delete(ctx, dgst), errdefs.ErrInvalidArgument, "Delete "+string(dgst))
		if dgst != "" {
			_, err = s.Writer(ctx, content.WithRef("bad"), content.WithDescriptor(ocispec.Descriptor{Digest: dgst}))
			requireClass(t, err, errdefs.ErrInvalidArgument, "Writer for "+string(dgst))
		}
	}
	_, err := s.Info(ctx, digest.FromString("absent"))
	requireClass(t, err, errdefs.ErrNotFound, "Info of an absent blob")
	_, err = s.ReaderAt(ctx, ocispec.Descriptor{Digest: digest.FromString("absent")})
	requireClass(t, err, errdefs.ErrNotFound, "ReaderAt of an absent blob")
	_, err = s.Writer(ctx, content.WithRef("bad"), content.WithDescriptor(ocispec.Descriptor{Size: -1}))
	requireClass(t, err, errdefs.ErrInvalidArgument, "Writer with a negative size")
	_, err = s.Status(ctx, "absent")
	requireClass(t, err, errdefs.ErrNotFound, "Status of an absent ingest")

	w, err := s.Writer(ctx, content.WithRef("bad-commit"))
	requireNoErr(t, err, "Writer")
	defer w.Close()
	requireClass(t, w.Commit(ctx, -1, ""), errdefs.ErrInvalidArgument, "Commit with a negative size")
	requireClass(t, w.Commit(ctx, 0, "sha256:nope"), errdefs.ErrInvalidArgument, "Commit with a bad digest")
	requireNoErr(t, w.Close(), "Close")
	_, err = w.Write([]byte("x"))
	requireClass(t, err, errdefs.ErrFailedPrecondition, "Write after Close")
	requireNoErr(t, s.Abort(ctx, "bad-commit"), "Abort")
	requireEmpty(t, ctx, s)
}

func testLargeBlob(t *testing.T, s content.Store) {
	ctx := ctxIn(t, NamespaceA)
	p, desc := blob(t, 20<<20+12345) // 20 MiB and then some: many chunks, the last one short
	w, err := s.Writer(ctx, content.WithRef("large-1"), content.WithDescriptor(desc))
	requireNoErr(t, err, "Writer")
	// One Write larger than any message: the store must split it.
	n, err := w.Write(p[:9<<20])
	if n != 9<<20 || err != nil {
		t.Fatalf("Write 9 MiB = %d, %v", n, err)
	}
	requireNoErr(t, w.Close(), "Close midway")
	commit(t, ctx, s, "large-1", p, desc)
	requireBlob(t, ctx, s, desc, p)

	ra, err := s.ReaderAt(ctx, desc)
	requireNoErr(t, err, "ReaderAt")
	defer ra.Close()
	buf := make([]byte, 3<<20+7)
	for off := int64(0); off < desc.Size; off += int64(len(buf)) {
		n, err := ra.ReadAt(buf, off)
		want := min(int64(len(buf)), desc.Size-off)
		if int64(n) != want || (err != nil && (err != io.EOF || int64(n) == int64(len(buf)))) {
			t.Fatalf("ReadAt(%d at %d) = %d, %v", len(buf), off, n, err)
		}
		if !bytes.Equal(buf[:n], p[off:off+int64(n)]) {
			t.Fatalf("ReadAt at %d: the bytes differ", off)
		}
	}
}

func testNamespaceIsolation(t *testing.T, s content.Store) {
	ctxA, ctxB := ctxIn(t, NamespaceA), ctxIn(t, NamespaceB)
	p, desc := blob(t, 100)
	commit(t, ctxA, s, "shared", p, desc, content.WithLabels(map[string]string{"ns": "a"}))

	_, err := s.Info(ctxB, desc.Digest)
	requireClass(t, err, errdefs.ErrNotFound, "Info in another namespace")
	_, err = s.ReaderAt(ctxB, desc)
	requireClass(t, err, errdefs.ErrNotFound, "ReaderAt in another namespace")
	requireClass(t, s.Delete(ctxB, desc.Digest), errdefs.ErrNotFound, "Delete in another namespace")
	_, err = s.Update(ctxB, content.Info{Digest: desc.Digest, Labels: map[string]string{"ns": "b"}})
	requireClass(t, err, errdefs.ErrNotFound, "Update in another namespace")
	requireEmpty(t, ctxB, s)

	// Ingests are per namespace: the same ref is another ingest.
	w, err := s.Writer(ctxA, content.WithRef("ingest"))
	requireNoErr(t, err, "Writer in A")
	defer w.Close()
	_, err = s.Status(ctxB, "ingest")
	requireClass(t, err, errdefs.ErrNotFound, "Status in another namespace")
	if list, err := s.ListStatuses(ctxB); err != nil || len(list) != 0 {
		t.Fatalf("ListStatuses in B = %+v, %v", list, err)
	}
	wb, err := s.Writer(ctxB, content.WithRef("ingest"))
	requireNoErr(t, err, "Writer of the same ref in B")
	requireNoErr(t, wb.Close(), "Close")
	requireNoErr(t, s.Abort(ctxB, "ingest"), "Abort in B")
	if _, err := s.Status(ctxA, "ingest"); err != nil {
		t.Fatalf("Status in A after Abort in B: %v", err)
	}

	// B gets the blob by writing it: a record, no second copy.
	commit(t, ctxB, s, "shared", p, desc)
	infoB, err := s.Info(ctxB, desc.Digest)
	requireNoErr(t, err, "Info in B")
	if infoB.Labels["ns"] != "" {
		t.Errorf("B sees A's labels: %v", infoB.Labels)
	}
	requireBlob(t, ctxB, s, desc, p)

	// Deleting in A leaves B's.
	requireNoErr(t, s.Delete(ctxA, desc.Digest), "Delete in A")
	_, err = s.Info(ctxA, desc.Digest)
	requireClass(t, err, errdefs.ErrNotFound, "Info in A after Delete")
	requireBlob(t, ctxB, s, desc, p)

	// Without a namespace, nothing.
	_, err = s.Info(t.Context(), desc.Digest)
	if err == nil {
		t.Fatal("Info without a namespace succeeded")
	}
}
