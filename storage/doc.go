// Package storage holds what berthd keeps durably on the host: the
// implementations of the shared vocabulary (packages content, snapshots,
// images, containers, leases, gc), one subpackage per concern. Only the
// daemon links them; the client library and berthctl never do (a test in
// internal/layering holds that line).
//
//   - metadata: the bbolt database (meta.db) with namespaces, containers,
//     images, leases, the per-namespace records of content and snapshots,
//     and the garbage collector over them.
//   - content/local: the local blob store; content/contenttest the suite
//     every content store runs.
//   - snapshots/overlay (the default), snapshots/native and
//     snapshots/btrfs: the snapshotters; snapshots/snapshotstest the
//     suite every snapshotter runs.
//
// Diff apply and compare are in package diff, over the content and
// snapshot roles. Every package here validates identifiers at its API edge
// (package identifiers), wraps errors in the classes of package errdefs,
// and makes every write that must survive a crash atomic: a bbolt
// transaction, or write, fsync and rename.
package storage
