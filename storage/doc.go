// Package storage holds what berthd keeps durably on the host, one
// subpackage per concern:
//
//   - metadata: the bbolt database (meta.db) with namespaces, containers
//     and, as they arrive, images, leases, and the per-namespace records
//     of content and snapshots.
//
//   - content: the local blob store.
//
//   - snapshots: the Snapshotter interface, its shared test suite, and the
//     overlay (default) and native snapshotters.
//
// Diff apply and compare will live beside them. Every package here validates
// identifiers at its API edge (package identifiers), wraps errors in the
// classes of package errdefs, and makes every write that must survive a
// crash atomic: a bbolt transaction, or write, fsync and rename.
package storage
