package metadata

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/leases"
	"github.com/berthrt/berth/namespaces"
)

// ContentStore returns the namespaced view of local, the store the blobs
// live in: a blob is visible in a namespace only through the namespace's
// record of it, v1/<ns>/content/blob/<digest>, which holds its size,
// labels and times. Blobs are shared underneath: a namespace that commits
// bytes local holds already gets a record, and nothing is written twice.
// A namespace gets a record only by writing the bytes itself, so knowing a
// digest is not enough to read another namespace's blob. Writer is
// ErrAlreadyExists when the namespace holds the expected digest already
// (the local store finds out only at Commit).
//
// Ingests are per namespace too: the ref of the ingest in local is
// "<namespace>/<ref>", so <namespace>/<ref> must fit content.MaxRefLength.
//
// Delete removes the namespace's record only; the blob stays in local,
// for other namespaces, until garbage collection removes blobs that no
// record names.
//
// Under a lease (leases.WithLease on the context of Writer or Commit), an
// ingest is recorded as the lease's resource when its Writer opens, and a
// committed blob when it commits (or when Writer answers AlreadyExists):
// garbage collection keeps them while the lease lives. A lease that does
// not exist makes Writer and Commit fail with ErrNotFound.
func (db *DB) ContentStore(local content.Store) content.Store {
	return &contentStore{db: db, local: local}
}

type contentStore struct {
	db    *DB
	local content.Store
}

// namespaceAndDigest returns the namespace of ctx and checks dgst.
func namespaceAndDigest(ctx context.Context, dgst digest.Digest) (string, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return "", err
	}
	return ns, content.ValidateDigest(dgst)
}

// localRef returns the namespace of ctx and the ref of local's ingest
// for ref.
func localRef(ctx context.Context, ref string) (string, string, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return "", "", err
	}
	if err := content.ValidateRef(ref); err != nil {
		return "", "", err
	}
	return ns, ns + "/" + ref, nil
}

func (s *contentStore) Info(ctx context.Context, dgst digest.Digest) (content.Info, error) {
	ns, err := namespaceAndDigest(ctx, dgst)
	if err != nil {
		return content.Info{}, err
	}
	var info content.Info
	err = s.db.view(ctx, func(tx *bolt.Tx) error {
		info, err = readBlobRecord(tx, ns, dgst)
		return err
	})
	return info, err
}

func (s *contentStore) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	if _, err := s.Info(ctx, desc.Digest); err != nil {
		return nil, err
	}
	return s.local.ReaderAt(ctx, desc)
}

func (s *contentStore) Update(ctx context.Context, info content.Info, fieldpaths ...string) (content.Info, error) {
	ns, err := namespaceAndDigest(ctx, info.Digest)
	if err != nil {
		return content.Info{}, err
	}
	var updated content.Info
	err = s.db.update(ctx, func(tx *bolt.Tx) error {
		current, err := readBlobRecord(tx, ns, info.Digest)
		if err != nil {
			return err
		}
		labels, err := content.UpdateLabels(current.Labels, info, fieldpaths)
		if err != nil {
			return err
		}
		b := blobBucket(tx, ns, info.Digest)
		if err := writeLabels(b, labels); err != nil {
			return err
		}
		if err := putTime(b, keyUpdatedAt, time.Now().UTC()); err != nil {
			return err
		}
		updated, err = readBlobRecord(tx, ns, info.Digest)
		return err
	})
	return updated, err
}

func (s *contentStore) Walk(ctx context.Context, fn content.WalkFunc, fs ...string) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	filter, err := content.ParseFilters(fs)
	if err != nil {
		return fmt.Errorf("content in namespace %q: %w", ns, err)
	}
	// fn runs after the transaction: it may call the store.
	var infos []content.Info
	err = s.db.view(ctx, func(tx *bolt.Tx) error {
		nsb := kindBucket(tx, ns, bucketContent)
		if nsb == nil || nsb.Bucket(bucketBlob) == nil {
			return nil
		}
		return nsb.Bucket(bucketBlob).ForEach(func(k, v []byte) error {
			if v != nil {
				return nil
			}
			info, err := readBlobRecord(tx, ns, digest.Digest(k))
			if err != nil {
				return err
			}
			if filter.Match(content.InfoAdaptor(info)) {
				infos = append(infos, info)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, info := range infos {
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

func (s *contentStore) Delete(ctx context.Context, dgst digest.Digest) error {
	ns, err := namespaceAndDigest(ctx, dgst)
	if err != nil {
		return err
	}
	err = s.db.update(ctx, func(tx *bolt.Tx) error {
		if blobBucket(tx, ns, dgst) == nil {
			return blobNotFound(ns, dgst)
		}
		return kindBucket(tx, ns, bucketContent).Bucket(bucketBlob).DeleteBucket([]byte(dgst))
	})
	if err == nil {
		s.db.dirtied()
	}
	return err
}

func (s *contentStore) Status(ctx context.Context, ref string) (content.Status, error) {
	_, lref, err := localRef(ctx, ref)
	if err != nil {
		return content.Status{}, err
	}
	st, err := s.local.Status(ctx, lref)
	st.Ref = ref
	return st, err
}

func (s *contentStore) ListStatuses(ctx context.Context, fs ...string) ([]content.Status, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	filter, err := content.ParseFilters(fs)
	if err != nil {
		return nil, fmt.Errorf("ingests in namespace %q: %w", ns, err)
	}
	all, err := s.local.ListStatuses(ctx)
	if err != nil {
		return nil, err
	}
	var list []content.Status
	for _, st := range all {
		ref, ok := strings.CutPrefix(st.Ref, ns+"/")
		if !ok {
			continue
		}
		st.Ref = ref
		if filter.Match(content.StatusAdaptor(st)) {
			list = append(list, st)
		}
	}
	return list, nil
}

func (s *contentStore) Abort(ctx context.Context, ref string) error {
	_, lref, err := localRef(ctx, ref)
	if err != nil {
		return err
	}
	return s.local.Abort(ctx, lref)
}

func (s *contentStore) Writer(ctx context.Context, opts ...content.WriterOpt) (content.Writer, error) {
	var wo content.WriterOpts
	for _, opt := range opts {
		if err := opt(&wo); err != nil {
			return nil, err
		}
	}
	ns, lref, err := localRef(ctx, wo.Ref)
	if err != nil {
		return nil, err
	}
	lease, err := contextLease(ctx)
	if err != nil {
		return nil, err
	}
	if wo.Desc.Digest != "" {
		if err := content.ValidateDigest(wo.Desc.Digest); err != nil {
			return nil, err
		}
		exists := false
		err := s.db.update(ctx, func(tx *bolt.Tx) error {
			exists = blobBucket(tx, ns, wo.Desc.Digest) != nil
			if !exists || lease == "" {
				return nil
			}
			// The caller holds the blob already: its lease protects it as
			// if the caller had written it again.
			return addLeaseResource(tx, ns, lease, leases.Resource{Type: leases.ResourceContent, ID: wo.Desc.Digest.String()})
		})
		if err != nil {
			return nil, err
		}
		if exists {
			return nil, fmt.Errorf("content %s in namespace %q: %w", wo.Desc.Digest, ns, errdefs.ErrAlreadyExists)
		}
	}
	if lease != "" {
		// Recorded before the ingest exists, so that garbage collection
		// never sees the ingest without its lease.
		err := s.db.update(ctx, func(tx *bolt.Tx) error {
			return addLeaseResource(tx, ns, lease, leases.Resource{Type: leases.ResourceIngest, ID: wo.Ref})
		})
		if err != nil {
			return nil, err
		}
	}
	w, err := s.local.Writer(ctx, content.WithRef(lref), content.WithDescriptor(wo.Desc))
	if err != nil {
		return nil, err
	}
	return &namespacedWriter{Writer: w, store: s, ns: ns, ref: wo.Ref, expected: wo.Desc.Digest, lease: lease}, nil
}

// contextLease returns the lease of ctx, if any, once it is a valid id.
func contextLease(ctx context.Context) (string, error) {
	id, ok := leases.FromContext(ctx)
	if !ok {
		return "", nil
	}
	if err := leases.Validate(id); err != nil {
		return "", err
	}
	return id, nil
}

// namespacedWriter writes an ingest of local and, on Commit, the
// namespace's record.
type namespacedWriter struct {
	content.Writer
	store    *contentStore
	ns, ref  string
	expected digest.Digest // from the descriptor, if any
	lease    string        // of the Writer's context, if any
}

// Reread is content.Rereader's, when the store's Writer offers it.
func (w *namespacedWriter) Reread() io.ReaderAt {
	if r, ok := w.Writer.(content.Rereader); ok {
		return r.Reread()
	}
	return nil
}

func (w *namespacedWriter) Status() (content.Status, error) {
	st, err := w.Writer.Status()
	st.Ref = w.ref
	return st, err
}

func (w *namespacedWriter) Commit(ctx context.Context, size int64, expected digest.Digest, opts ...content.Opt) error {
	var info content.Info
	for _, opt := range opts {
		if err := opt(&info); err != nil {
			return err
		}
	}
	if err := content.ValidateLabels(info.Labels); err != nil {
		return fmt.Errorf("ingest %q: %w", w.ref, err)
	}
	lease, err := contextLease(ctx)
	if err != nil {
		return err
	}
	if lease == "" {
		lease = w.lease
	}
	// From the bytes landing in local until the record exists, garbage
	// collection must not sweep the blob: no record names it yet.
	w.store.db.gcLock.RLock()
	defer w.store.db.gcLock.RUnlock()
	// The labels stay here, in the record; local keeps bytes only. Bytes
	// that local holds already were verified all the same: that is how
	// this namespace proves it has them.
	err = w.Writer.Commit(ctx, size, expected)
	if err != nil && !errdefs.IsAlreadyExists(err) {
		return err
	}
	dgst := expected
	if dgst == "" {
		dgst = w.expected
	}
	if dgst == "" {
		dgst = w.Writer.Digest()
	}
	stored, err := w.store.local.Info(ctx, dgst)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	exists := false
	err = w.store.db.update(context.WithoutCancel(ctx), func(tx *bolt.Tx) error {
		if lease != "" {
			if err := addLeaseResource(tx, w.ns, lease, leases.Resource{Type: leases.ResourceContent, ID: dgst.String()}); err != nil {
				return err
			}
			// The ingest is gone; the blob is what the lease holds now.
			if b := resourceBucket(leaseBucket(tx, w.ns, lease), leases.ResourceIngest); b != nil {
				if err := b.Delete([]byte(w.ref)); err != nil {
					return err
				}
			}
		}
		bkt, err := createKindBucket(tx, w.ns, bucketContent)
		if err != nil {
			return err
		}
		blobs, err := bkt.CreateBucketIfNotExists(bucketBlob)
		if err != nil {
			return err
		}
		if blobs.Bucket([]byte(dgst)) != nil {
			exists = true
			return nil
		}
		b, err := blobs.CreateBucket([]byte(dgst))
		if err != nil {
			return err
		}
		if err := b.Put(keySize, binary.AppendVarint(nil, stored.Size)); err != nil {
			return err
		}
		if err := putTime(b, keyCreatedAt, now); err != nil {
			return err
		}
		if err := putTime(b, keyUpdatedAt, now); err != nil {
			return err
		}
		return writeLabels(b, info.Labels)
	})
	if err == nil && exists {
		return fmt.Errorf("content %s in namespace %q: %w", dgst, w.ns, errdefs.ErrAlreadyExists)
	}
	return err
}

// blobBucket returns v1/<ns>/content/blob/<dgst>, or nil when absent.
func blobBucket(tx *bolt.Tx, ns string, dgst digest.Digest) *bolt.Bucket {
	bkt := kindBucket(tx, ns, bucketContent)
	if bkt == nil || bkt.Bucket(bucketBlob) == nil {
		return nil
	}
	return bkt.Bucket(bucketBlob).Bucket([]byte(dgst))
}

// readBlobRecord reads the namespace's record of dgst.
func readBlobRecord(tx *bolt.Tx, ns string, dgst digest.Digest) (content.Info, error) {
	b := blobBucket(tx, ns, dgst)
	if b == nil {
		return content.Info{}, blobNotFound(ns, dgst)
	}
	info := content.Info{Digest: dgst, Labels: readLabels(b)}
	size, n := binary.Varint(b.Get(keySize))
	if n <= 0 || size < 0 {
		return content.Info{}, fmt.Errorf("content %s in namespace %q: bad size %x: %w", dgst, ns, b.Get(keySize), errdefs.ErrInternal)
	}
	info.Size = size
	for _, t := range []struct {
		key []byte
		to  *time.Time
	}{{keyCreatedAt, &info.CreatedAt}, {keyUpdatedAt, &info.UpdatedAt}} {
		if err := t.to.UnmarshalBinary(b.Get(t.key)); err != nil {
			return content.Info{}, fmt.Errorf("content %s in namespace %q: %s: %v: %w", dgst, ns, t.key, err, errdefs.ErrInternal)
		}
		*t.to = t.to.UTC()
	}
	return info, nil
}

func putTime(b *bolt.Bucket, key []byte, t time.Time) error {
	raw, err := t.MarshalBinary()
	if err != nil {
		return err
	}
	return b.Put(key, raw)
}

func blobNotFound(ns string, dgst digest.Digest) error {
	return fmt.Errorf("content %s in namespace %q: %w", dgst, ns, errdefs.ErrNotFound)
}
