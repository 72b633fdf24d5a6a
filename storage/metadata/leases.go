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

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/filters"
	"github.com/berthrt/berth/identifiers"
	"github.com/berthrt/berth/leases"
	"github.com/berthrt/berth/namespaces"
	"github.com/berthrt/berth/storage/content"
	"github.com/berthrt/berth/storage/snapshots"
)

// Lease is the record of a lease: while it exists and has not expired,
// garbage collection keeps every resource it holds.
type Lease struct {
	// ID names the lease in its namespace; an identifier. LeaseManager
	// Create makes one up when it is empty.
	ID string
	// Labels are free metadata. leases.ExpireLabel (berth.io/gc.expire)
	// holds an RFC 3339 time after which the lease no longer protects
	// anything and garbage collection deletes it.
	Labels map[string]string
	// CreatedAt is set by the store, in UTC.
	CreatedAt time.Time
}

// Expired reports whether the lease's expiry label is before now. A lease
// whose label does not parse never expires (Create refuses such a label).
func (l Lease) Expired(now time.Time) bool {
	exp, ok := l.Labels[leases.ExpireLabel]
	if !ok {
		return false
	}
	t, err := time.Parse(time.RFC3339Nano, exp)
	return err == nil && now.After(t)
}

// The types of lease resources.
const (
	// ResourceContent is a committed blob; the id is its digest.
	ResourceContent = "content"
	// ResourceIngest is an ingest under way; the id is its ref.
	ResourceIngest = "ingests"
	// ResourceSnapshotPrefix prefixes the type of a snapshot:
	// "snapshots/<snapshotter>"; the id is the snapshot key.
	ResourceSnapshotPrefix = "snapshots/"
)

// LeaseResource is one thing a lease holds, named by type and id.
type LeaseResource struct {
	// Type is ResourceContent, ResourceIngest or
	// ResourceSnapshotPrefix+<snapshotter>.
	Type string
	// ID is the digest, the ingest ref or the snapshot key.
	ID string
}

// LeaseManager keeps the leases of the namespace on each call's context.
// A resource may be added to a lease before it exists (a pull leases the
// digests it is about to fetch); it need not exist to be removed either.
type LeaseManager interface {
	// Create stores l, creating the namespace when it is absent, with a
	// generated id when l.ID is empty; ErrAlreadyExists if the id is
	// taken.
	Create(ctx context.Context, l Lease) (Lease, error)
	// Delete removes the lease id and its resources (not what they
	// name: garbage collection does that); ErrNotFound if absent.
	Delete(ctx context.Context, id string) error
	// List returns the leases that match any of filters (all when none),
	// ordered by id. Fields: id, labels.<key>.
	List(ctx context.Context, filters ...string) ([]Lease, error)
	// AddResource adds r to the lease id; adding it twice is no error.
	// ErrNotFound if the lease is absent.
	AddResource(ctx context.Context, id string, r LeaseResource) error
	// DeleteResource removes r from the lease id; removing a resource the
	// lease does not hold is no error. ErrNotFound if the lease is absent.
	DeleteResource(ctx context.Context, id string, r LeaseResource) error
	// ListResources returns the resources of the lease id, ordered by
	// type and id; ErrNotFound if the lease is absent.
	ListResources(ctx context.Context, id string) ([]LeaseResource, error)
}

// Leases returns the lease manager of db.
func (db *DB) Leases() LeaseManager {
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

func validateLease(l Lease) error {
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
func validateResource(r LeaseResource) error {
	switch {
	case r.Type == ResourceContent:
		return content.ValidateDigest(digest.Digest(r.ID))
	case r.Type == ResourceIngest:
		return content.ValidateRef(r.ID)
	case strings.HasPrefix(r.Type, ResourceSnapshotPrefix):
		if err := identifiers.Validate(strings.TrimPrefix(r.Type, ResourceSnapshotPrefix)); err != nil {
			return fmt.Errorf("resource type %q: snapshotter: %w", r.Type, err)
		}
		if err := snapshots.ValidateKey(r.ID); err != nil {
			return fmt.Errorf("resource %q: snapshot key: %w", r.Type, err)
		}
		return nil
	}
	return fmt.Errorf("resource type %.64q: not %s, %s or %s<snapshotter>: %w", r.Type, ResourceContent, ResourceIngest, ResourceSnapshotPrefix, errdefs.ErrInvalidArgument)
}

func (m *leaseManager) Create(ctx context.Context, l Lease) (Lease, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return Lease{}, err
	}
	if l.ID == "" {
		l.ID = newLeaseID()
	}
	if err := validateLease(l); err != nil {
		return Lease{}, err
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
		return Lease{}, err
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

func (m *leaseManager) List(ctx context.Context, fs ...string) ([]Lease, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	filter, err := parseListFilters(ns, "leases", fs)
	if err != nil {
		return nil, err
	}
	var list []Lease
	err = m.db.view(ctx, func(tx *bolt.Tx) error {
		all, err := readLeases(tx, ns)
		for _, l := range all {
			if filter.Match(leaseAdaptor(l)) {
				list = append(list, l)
			}
		}
		return err
	})
	return list, err
}

func (m *leaseManager) AddResource(ctx context.Context, id string, r LeaseResource) error {
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

func (m *leaseManager) DeleteResource(ctx context.Context, id string, r LeaseResource) error {
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

func (m *leaseManager) ListResources(ctx context.Context, id string) ([]LeaseResource, error) {
	ns, err := namespaceAndLease(ctx, id)
	if err != nil {
		return nil, err
	}
	var list []LeaseResource
	err = m.db.view(ctx, func(tx *bolt.Tx) error {
		lb := leaseBucket(tx, ns, id)
		if lb == nil {
			return leaseNotFound(ns, id)
		}
		return walkLeaseResources(lb, func(r LeaseResource) error {
			list = append(list, r)
			return nil
		})
	})
	return list, err
}

// addLeaseResource records r in the lease id of ns; ErrNotFound when the
// lease is absent.
func addLeaseResource(tx *bolt.Tx, ns, id string, r LeaseResource) error {
	lb := leaseBucket(tx, ns, id)
	if lb == nil {
		return leaseNotFound(ns, id)
	}
	var b *bolt.Bucket
	var err error
	if snapshotter, ok := strings.CutPrefix(r.Type, ResourceSnapshotPrefix); ok {
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
	if snapshotter, ok := strings.CutPrefix(typ, ResourceSnapshotPrefix); ok {
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
func walkLeaseResources(lb *bolt.Bucket, fn func(LeaseResource) error) error {
	each := func(typ string, b *bolt.Bucket) error {
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if v == nil && b.Bucket(k) != nil {
				return nil
			}
			return fn(LeaseResource{Type: typ, ID: string(k)})
		})
	}
	if err := each(ResourceContent, lb.Bucket(bucketContent)); err != nil {
		return err
	}
	if err := each(ResourceIngest, lb.Bucket(bucketIngests)); err != nil {
		return err
	}
	if sb := lb.Bucket(bucketSnapshots); sb != nil {
		return sb.ForEach(func(k, v []byte) error {
			if v != nil {
				return nil
			}
			return each(ResourceSnapshotPrefix+string(k), sb.Bucket(k))
		})
	}
	return nil
}

// readLeases returns every lease of ns, ordered by id.
func readLeases(tx *bolt.Tx, ns string) ([]Lease, error) {
	bkt := kindBucket(tx, ns, bucketLeases)
	if bkt == nil {
		return nil, nil
	}
	var list []Lease
	c := bkt.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v != nil {
			continue
		}
		lb := bkt.Bucket(k)
		l := Lease{ID: string(k), Labels: readLabels(lb)}
		if err := l.CreatedAt.UnmarshalBinary(lb.Get(keyCreatedAt)); err != nil {
			return nil, fmt.Errorf("lease %q in namespace %q: createdat: %v: %w", k, ns, err, errdefs.ErrInternal)
		}
		l.CreatedAt = l.CreatedAt.UTC()
		list = append(list, l)
	}
	return list, nil
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
func leaseAdaptor(l Lease) filters.Adaptor {
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
