package leases

import (
	"context"
	"time"
)

// Lease is the record of a lease: while it exists and has not expired,
// garbage collection keeps every resource it holds.
type Lease struct {
	// ID names the lease in its namespace; an identifier. Manager
	// Create makes one up when it is empty.
	ID string
	// Labels are free metadata. ExpireLabel (berth.io/gc.expire)
	// holds an RFC 3339 time after which the lease no longer protects
	// anything and garbage collection deletes it.
	Labels map[string]string
	// CreatedAt is set by the store, in UTC.
	CreatedAt time.Time
}

// Expired reports whether the lease's expiry label is before now. A lease
// whose label does not parse never expires (Create refuses such a label).
func (l Lease) Expired(now time.Time) bool {
	exp, ok := l.Labels[ExpireLabel]
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

// Resource is one thing a lease holds, named by type and id.
type Resource struct {
	// Type is ResourceContent, ResourceIngest or
	// ResourceSnapshotPrefix+<snapshotter>.
	Type string
	// ID is the digest, the ingest ref or the snapshot key.
	ID string
}

// Manager keeps the leases of the namespace on each call's context.
// A resource may be added to a lease before it exists (a pull leases the
// digests it is about to fetch); it need not exist to be removed either.
type Manager interface {
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
	AddResource(ctx context.Context, id string, r Resource) error
	// DeleteResource removes r from the lease id; removing a resource the
	// lease does not hold is no error. ErrNotFound if the lease is absent.
	DeleteResource(ctx context.Context, id string, r Resource) error
	// ListResources returns the resources of the lease id, ordered by
	// type and id; ErrNotFound if the lease is absent.
	ListResources(ctx context.Context, id string) ([]Resource, error)
}
