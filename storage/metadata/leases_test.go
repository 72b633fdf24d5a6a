package metadata

import (
	"bytes"
	"slices"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/leases"
)

func TestLeaseCRUD(t *testing.T) {
	db, _ := newTestDB(t)
	ctx := nsCtx("ci")
	m := db.Leases()
	l, err := m.Create(ctx, leases.Lease{ID: "pull-1", Labels: map[string]string{"by": "test"}})
	requireNoErr(t, err)
	if l.CreatedAt.IsZero() {
		t.Error("no CreatedAt")
	}
	gen, err := m.Create(ctx, leases.Lease{})
	requireNoErr(t, err)
	if leases.Validate(gen.ID) != nil {
		t.Errorf("generated id %q is not valid", gen.ID)
	}
	refusedUnchanged(t, db, errdefs.ErrAlreadyExists, func() error { _, err := m.Create(ctx, leases.Lease{ID: "pull-1"}); return err })
	for name, id := range badIdentifiers {
		if id == "" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			refusedUnchanged(t, db, errdefs.ErrInvalidArgument, func() error { _, err := m.Create(ctx, leases.Lease{ID: id}); return err })
		})
	}
	refusedUnchanged(t, db, errdefs.ErrInvalidArgument, func() error {
		_, err := m.Create(ctx, leases.Lease{ID: "x", Labels: map[string]string{leases.ExpireLabel: "tomorrow"}})
		return err
	})

	list, err := m.List(ctx, "labels.by==test")
	requireNoErr(t, err)
	if len(list) != 1 || list[0].ID != "pull-1" {
		t.Errorf("List = %+v", list)
	}
	if list, _ := m.List(nsCtx("other")); len(list) != 0 {
		t.Errorf("List in another namespace = %+v", list)
	}

	// Resources.
	dgst := digest.FromString("x")
	rs := []leases.Resource{
		{Type: leases.ResourceContent, ID: dgst.String()},
		{Type: leases.ResourceIngest, ID: "ingest-1"},
		{Type: leases.ResourceSnapshotPrefix + "overlayfs", ID: "layer-1"},
	}
	for _, r := range rs {
		requireNoErr(t, m.AddResource(ctx, "pull-1", r))
		requireNoErr(t, m.AddResource(ctx, "pull-1", r)) // twice is fine
	}
	got, err := m.ListResources(ctx, "pull-1")
	requireNoErr(t, err)
	if !slices.Equal(got, rs) {
		t.Errorf("ListResources = %v, want %v", got, rs)
	}
	for _, r := range []leases.Resource{{Type: "images", ID: "x"}, {Type: leases.ResourceContent, ID: "sha256:zz"}, {Type: leases.ResourceSnapshotPrefix + "../x", ID: "k"}} {
		refusedUnchanged(t, db, errdefs.ErrInvalidArgument, func() error { return m.AddResource(ctx, "pull-1", r) })
	}
	refusedUnchanged(t, db, errdefs.ErrNotFound, func() error { return m.AddResource(ctx, "absent", rs[0]) })
	refusedUnchanged(t, db, errdefs.ErrNotFound, func() error { return m.AddResource(nsCtx("other"), "pull-1", rs[0]) })
	requireNoErr(t, m.DeleteResource(ctx, "pull-1", rs[1]))
	requireNoErr(t, m.DeleteResource(ctx, "pull-1", rs[1]))
	got, _ = m.ListResources(ctx, "pull-1")
	if !slices.Equal(got, []leases.Resource{rs[0], rs[2]}) {
		t.Errorf("after DeleteResource: %v", got)
	}

	requireNoErr(t, m.Delete(ctx, "pull-1"))
	refusedUnchanged(t, db, errdefs.ErrNotFound, func() error { return m.Delete(ctx, "pull-1") })
	if _, err := m.ListResources(ctx, "pull-1"); !errdefs.IsNotFound(err) {
		t.Errorf("ListResources after Delete: %v", err)
	}
}

func TestLeaseExpired(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		label string
		want  bool
	}{
		{"", false},
		{now.Add(-time.Second).Format(time.RFC3339Nano), true},
		{now.Add(time.Hour).Format(time.RFC3339), false},
	} {
		l := leases.Lease{}
		if tc.label != "" {
			l.Labels = map[string]string{leases.ExpireLabel: tc.label}
		}
		if got := l.Expired(now); got != tc.want {
			t.Errorf("Expired with %q = %v", tc.label, got)
		}
	}
}

// Content written under a lease becomes its resource: the ingest while it
// is written, the blob once committed; a blob the namespace holds already
// is added when Writer answers AlreadyExists.
func TestContentUnderLease(t *testing.T) {
	s, _, db := newContentStore(t)
	ctx := nsCtx("ci")
	_, err := db.Leases().Create(ctx, leases.Lease{ID: "l1"})
	requireNoErr(t, err)
	lctx := leases.WithLease(ctx, "l1")

	p := []byte("leased bytes")
	desc := ocispec.Descriptor{Digest: digest.FromBytes(p), Size: int64(len(p))}
	w, err := s.Writer(lctx, content.WithRef("r1"), content.WithDescriptor(desc))
	requireNoErr(t, err)
	rs, _ := db.Leases().ListResources(ctx, "l1")
	if !slices.Equal(rs, []leases.Resource{{Type: leases.ResourceIngest, ID: "r1"}}) {
		t.Errorf("while writing: %v", rs)
	}
	_, err = w.Write(p)
	requireNoErr(t, err)
	requireNoErr(t, w.Commit(lctx, desc.Size, desc.Digest))
	requireNoErr(t, w.Close())
	rs, _ = db.Leases().ListResources(ctx, "l1")
	if !slices.Equal(rs, []leases.Resource{{Type: leases.ResourceContent, ID: desc.Digest.String()}}) {
		t.Errorf("after commit: %v", rs)
	}

	_, err = db.Leases().Create(ctx, leases.Lease{ID: "l2"})
	requireNoErr(t, err)
	_, err = s.Writer(leases.WithLease(ctx, "l2"), content.WithRef("r2"), content.WithDescriptor(desc))
	requireClass(t, err, errdefs.ErrAlreadyExists)
	rs, _ = db.Leases().ListResources(ctx, "l2")
	if !slices.Equal(rs, []leases.Resource{{Type: leases.ResourceContent, ID: desc.Digest.String()}}) {
		t.Errorf("after AlreadyExists: %v", rs)
	}

	// A lease that does not exist refuses the write.
	err = content.WriteBlob(leases.WithLease(ctx, "absent"), s, "r3", bytes.NewReader([]byte("other")), ocispec.Descriptor{})
	requireClass(t, err, errdefs.ErrNotFound)
}
