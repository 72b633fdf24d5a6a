package metadata

import (
	"bytes"
	"path/filepath"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/storage/content/contenttest"
	"github.com/berthrt/berth/storage/content/local"
)

// newContentStore returns a namespaced content store and the local store
// under it.
func newContentStore(t *testing.T) (content.Store, content.Store, *DB) {
	t.Helper()
	db, path := newTestDB(t)
	localStore, err := local.NewStore(filepath.Join(filepath.Dir(path), "content"))
	requireNoErr(t, err)
	return db.ContentStore(localStore), localStore, db
}

func TestNamespacedContentSuite(t *testing.T) {
	contenttest.Run(t, func(t *testing.T) content.Store {
		s, _, _ := newContentStore(t)
		return s
	}, contenttest.Options{Namespaced: true, Reread: true})
}

// Records count toward a namespace's contents; deleting one leaves the
// blob underneath, and the namespace can go once no record is left.
func TestContentRecordsAndNamespaceDelete(t *testing.T) {
	s, localStore, db := newContentStore(t)
	ctx := nsCtx("ci")
	p := []byte("a blob")
	desc := ocispec.Descriptor{Digest: digest.FromBytes(p), Size: int64(len(p))}
	requireNoErr(t, content.WriteBlob(ctx, s, "ref", bytes.NewReader(p), desc))

	err := refusedUnchanged(t, db, errdefs.ErrFailedPrecondition, func() error { return db.Namespaces().Delete(ctx, "ci") })
	errorContains(t, err, "1 content record")

	requireNoErr(t, s.Delete(ctx, desc.Digest))
	if _, err := localStore.Info(ctx, desc.Digest); err != nil {
		t.Fatalf("the blob underneath went with the record: %v", err)
	}
	requireNoErr(t, db.Namespaces().Delete(ctx, "ci"))
}

// Calls without a namespace, or with a bad one, are refused and write
// nothing.
func TestContentNamespaceRequired(t *testing.T) {
	s, _, db := newContentStore(t)
	dgst := digest.FromString("x")
	refusedUnchanged(t, db, errdefs.ErrFailedPrecondition, func() error { _, err := s.Info(t.Context(), dgst); return err })
	refusedUnchanged(t, db, errdefs.ErrFailedPrecondition, func() error { _, err := s.Writer(t.Context(), content.WithRef("r")); return err })
	for name, ns := range badIdentifiers {
		if ns == "" {
			continue
		}
		refusedUnchanged(t, db, errdefs.ErrInvalidArgument, func() error {
			_, err := s.Writer(nsCtx(ns), content.WithRef("r"))
			if err == nil {
				t.Errorf("%s namespace accepted", name)
			}
			return err
		})
	}
}
