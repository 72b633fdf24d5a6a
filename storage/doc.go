// Package storage holds what berthd keeps durably on the host, one
// subpackage per concern:
//
//   - metadata: the bbolt database (meta.db) with namespaces, containers
//     and, as they arrive, images, leases, and the per-namespace records
//     of content and snapshots.
//
// The content store (blobs), the snapshotters, diff apply and compare, and
// garbage collection will live beside it. Every package here validates
// identifiers at its API edge (package identifiers), wraps errors in the
// classes of package errdefs, and makes every write that must survive a
// crash atomic: a bbolt transaction, or write, fsync and rename.
package storage
