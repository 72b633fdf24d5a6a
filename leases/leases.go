// Package leases is the vocabulary of leases — the record (Lease), what it
// holds (Resource) and the role of whatever keeps them (Manager) — and
// carries the lease of a request on its context and across ttrpc as
// request metadata, as package namespaces does for the namespace. It
// imports no store.
//
// A lease protects what is created under it from garbage collection until
// the lease is deleted or expires: content committed and ingests opened in
// the namespace of a context that carries a lease are recorded as the
// lease's resources. The daemon keeps leases in storage/metadata; the
// client library implements Manager over the leases API.
package leases

import (
	"context"
	"fmt"

	"github.com/berthrt/berth/identifiers"
	"github.com/berthrt/berth/internal/ctxmd"
)

const (
	// MetadataKey is the ttrpc request metadata key that carries the lease
	// id from client to daemon.
	MetadataKey = "berth-lease"

	// ExpireLabel on a lease holds the time (RFC 3339) after which garbage
	// collection treats the lease as gone and deletes it.
	ExpireLabel = "berth.io/gc.expire"
)

// carrier carries the lease id (package ctxmd).
var carrier = ctxmd.NewKey(MetadataKey)

// WithLease returns a context carrying the lease id, for this process and,
// through ttrpc metadata, for the daemon the context's calls go to.
func WithLease(ctx context.Context, id string) context.Context {
	return carrier.With(ctx, id)
}

// WithoutLease returns a context that carries no lease, even if ctx does:
// what is created under it is not protected by ctx's lease.
func WithoutLease(ctx context.Context) context.Context {
	return carrier.Without(ctx)
}

// FromContext returns the lease of ctx: the id set by WithLease, or failing
// that the one received in ttrpc metadata. ok is false when there is none.
func FromContext(ctx context.Context) (id string, ok bool) {
	id, set := carrier.Get(ctx)
	return id, set && id != ""
}

// Validate checks a lease id: an identifier (package identifiers).
func Validate(id string) error {
	if err := identifiers.Validate(id); err != nil {
		return fmt.Errorf("lease id: %w", err)
	}
	return nil
}
