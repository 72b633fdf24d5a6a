package metadata

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/filters"
	"github.com/berthrt/berth/identifiers"
	"github.com/berthrt/berth/leases"
	"github.com/berthrt/berth/namespaces"
	"github.com/berthrt/berth/snapshots"
)

// Leases returns the lease manager of db.
func (db *DB) Leases() leases.Manager {
	return &leaseManager{db: db}
}

type leaseManager struct {
	db *DB
}

// The buckets of a lease, v1/<ns>/leases/<id>/; doc.go draws them.
var (
	bucketIngests = []byte("ingests")
)

func namespaceAndLease(ctx context.Context, id string) (string, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return "", err
	}
	return ns, leases.Validate(id)
}

// newLeaseID returns a fresh lease id: the time and random bits.
func newLeaseID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%d-%s", time.Now().UnixNano(), hex.EncodeToString(b[:]))
}

func validateLease(l leases.Lease) error {
	if err := leases.Validate(l.ID); err != nil {
		return err
	}
	if err := validateLabels(l.Labels); err != nil {
		return fmt.Errorf("lease %q: %w", l.ID, err)
	}
	if exp, ok := l.Labels[leases.ExpireLabel]; ok && exp != "" {
		if _, err := time.Parse(time.RFC3339Nano, exp); err != nil {
			return fmt.Errorf("lease %q: label %s %q is not an RFC 3339 time: %w", l.ID, leases.ExpireLabel, exp, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// validateResource checks r: a known type and an id that fits it.
func validateResource(r leases.Resource) error {
	switch {
	case r.Type == leases.ResourceContent:
		return content.ValidateDigest(digest.Digest(r.ID))
	case r.Type == leases.ResourceIngest:
		return content.ValidateRef(r.ID)
	case strings.HasPrefix(r.Type, leases.ResourceSnapshotPrefix):
		if err := identifiers.Validate(strings.TrimPrefix(r.Type, leases.ResourceSnapshotPrefix)); err != nil {
			return fmt.Errorf("resource type %q: snapshotter: %w", r.Type, err)
		}
		if err := snapshots.ValidateKey(r.ID); err != nil {
			return fmt.Errorf("resource %q: snapshot key: %w", r.Type, err)
		}
		return nil
	}
	return fmt.Errorf("resource type %.64q: not %s, %s or %s<snapshotter>: %w", r.Type, leases.ResourceContent, leases.ResourceIngest, leases.ResourceSnapshotPrefix, errdefs.ErrInvalidArgument)
}

func (m *leaseManager) Create(ctx context.Context, l leases.Lease) (leases.Lease, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return leases.Lease{}, err
	}
	if l.ID == "" {
		l.ID = newLeaseID()
	}
	if err := validateLease(l); err != nil {
		return leases.Lease{}, err
	}
	l.Labels = cleanLabels(l.Labels)
	l.CreatedAt = time.Now().UTC()
	err = m.db.update(ctx, func(tx *bolt.Tx) error {
		lb, err := createObjectBucket(tx, ns, bucketLeases, "lease", l.ID)
		if err != nil {
			return err
		}
		if err := putTime(lb, keyCreatedAt, l.CreatedAt); err != nil {
			return err
		}
		return writeLabels(lb, l.Labels)
	})
	if err != nil {
		return leases.Lease{}, err
	}
	return l, nil
}

func (m *leaseManager) Delete(ctx context.Context, id string) error {
	ns, err := namespaceAndLease(ctx, id)
	if err != nil {
		return err
	}
	err = m.db.update(ctx, func(tx *bolt.Tx) error {
		bkt := kindBucket(tx, ns, bucketLeases)
		if bkt == nil || bkt.Bucket([]byte(id)) == nil {
			return leaseNotFound(ns, id)
		}
		return bkt.DeleteBucket([]byte(id))
	})
	if err == nil {
		m.db.dirtied()
	}
	return err
}

func (m *leaseManager) List(ctx context.Context, fs ...string) ([]leases.Lease, error) {
	return listObjects(ctx, m.db, bucketLeases, "leases", fs, readLease, leaseAdaptor)
}

func (m *leaseManager) AddResource(ctx context.Context, id string, r leases.Resource) error {
	ns, err := namespaceAndLease(ctx, id)
	if err != nil {
		return err
	}
	if err := validateResource(r); err != nil {
		return fmt.Errorf("lease %q: %w", id, err)
	}
	return m.db.update(ctx, func(tx *bolt.Tx) error {
		return addLeaseResource(tx, ns, id, r)
	})
}

func (m *leaseManager) DeleteResource(ctx context.Context, id string, r leases.Resource) error {
	ns, err := namespaceAndLease(ctx, id)
	if err != nil {
		return err
	}
	if err := validateResource(r); err != nil {
		return fmt.Errorf("lease %q: %w", id, err)
	}
	err = m.db.update(ctx, func(tx *bolt.Tx) error {
		lb := leaseBucket(tx, ns, id)
		if lb == nil {
			return leaseNotFound(ns, id)
		}
		b := resourceBucket(lb, r.Type)
		if b == nil || b.Get([]byte(r.ID)) == nil {
			return nil
		}
		return b.Delete([]byte(r.ID))
	})
	if err == nil {
		m.db.dirtied()
	}
	return err
}

func (m *leaseManager) ListResources(ctx context.Context, id string) ([]leases.Resource, error) {
	ns, err := namespaceAndLease(ctx, id)
	if err != nil {
		return nil, err
	}
	var list []leases.Resource
	err = m.db.view(ctx, func(tx *bolt.Tx) error {
		lb := leaseBucket(tx, ns, id)
		if lb == nil {
			return leaseNotFound(ns, id)
		}
		return walkLeaseResources(lb, func(r leases.Resource) error {
			list = append(list, r)
			return nil
		})
	})
	return list, err
}

// addLeaseResource records r in the lease id of ns; ErrNotFound when the
// lease is absent.
func addLeaseResource(tx *bolt.Tx, ns, id string, r leases.Resource) error {
	lb := leaseBucket(tx, ns, id)
	if lb == nil {
		return leaseNotFound(ns, id)
	}
	var b *bolt.Bucket
	var err error
	if snapshotter, ok := strings.CutPrefix(r.Type, leases.ResourceSnapshotPrefix); ok {
		sb, err := lb.CreateBucketIfNotExists(bucketSnapshots)
		if err != nil {
			return err
		}
		b, err = sb.CreateBucketIfNotExists([]byte(snapshotter))
		if err != nil {
			return err
		}
	} else {
		b, err = lb.CreateBucketIfNotExists([]byte(r.Type))
		if err != nil {
			return err
		}
	}
	return b.Put([]byte(r.ID), nil)
}

// resourceBucket returns the bucket of lb that holds resources of type
// typ, or nil.
func resourceBucket(lb *bolt.Bucket, typ string) *bolt.Bucket {
	if snapshotter, ok := strings.CutPrefix(typ, leases.ResourceSnapshotPrefix); ok {
		sb := lb.Bucket(bucketSnapshots)
		if sb == nil {
			return nil
		}
		return sb.Bucket([]byte(snapshotter))
	}
	return lb.Bucket([]byte(typ))
}

// walkLeaseResources calls fn for every resource of lb, ordered by type
// and id.
func walkLeaseResources(lb *bolt.Bucket, fn func(leases.Resource) error) error {
	each := func(typ string, b *bolt.Bucket) error {
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if v == nil && b.Bucket(k) != nil {
				return nil
			}
			return fn(leases.Resource{Type: typ, ID: string(k)})
		})
	}
	if err := each(leases.ResourceContent, lb.Bucket(bucketContent)); err != nil {
		return err
	}
	if err := each(leases.ResourceIngest, lb.Bucket(bucketIngests)); err != nil {
		return err
	}
	if sb := lb.Bucket(bucketSnapshots); sb != nil {
		return sb.ForEach(func(k, v []byte) error {
			if v != nil {
				return nil
			}
			return each(leases.ResourceSnapshotPrefix+string(k), sb.Bucket(k))
		})
	}
	return nil
}

// readLeases returns every lease of ns, ordered by id.
func readLeases(tx *bolt.Tx, ns string) ([]leases.Lease, error) {
	var list []leases.Lease
	err := eachObject(tx, ns, bucketLeases, func(id string, lb *bolt.Bucket) error {
		l, err := readLease(ns, id, lb)
		if err != nil {
			return err
		}
		list = append(list, l)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return list, nil
}

// readLease reads the lease id of ns from its bucket.
func readLease(ns, id string, lb *bolt.Bucket) (leases.Lease, error) {
	l := leases.Lease{ID: id, Labels: readLabels(lb)}
	if err := l.CreatedAt.UnmarshalBinary(lb.Get(keyCreatedAt)); err != nil {
		return leases.Lease{}, fmt.Errorf("lease %q in namespace %q: createdat: %v: %w", id, ns, err, errdefs.ErrInternal)
	}
	l.CreatedAt = l.CreatedAt.UTC()
	return l, nil
}

// leaseBucket returns v1/<ns>/leases/<id>, or nil.
func leaseBucket(tx *bolt.Tx, ns, id string) *bolt.Bucket {
	bkt := kindBucket(tx, ns, bucketLeases)
	if bkt == nil {
		return nil
	}
	return bkt.Bucket([]byte(id))
}

func leaseNotFound(ns, id string) error {
	return fmt.Errorf("lease %q in namespace %q: %w", id, ns, errdefs.ErrNotFound)
}

// leaseAdaptor exposes a lease's fields to a filter.
func leaseAdaptor(l leases.Lease) filters.Adaptor {
	return filters.AdapterFunc(func(fieldpath []string) (string, bool) {
		switch fieldpath[0] {
		case "id":
			return filters.Value(l.ID, fieldpath[1:])
		case "labels":
			return filters.Labels(l.Labels, fieldpath[1:])
		}
		return "", false
	})
}
