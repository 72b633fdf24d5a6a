// Package unpack turns an image's layers into committed snapshots, one per
// layer, each named by its chain ID (identity.ChainID over the config's
// diff IDs up to that layer), so that images sharing a base share its
// snapshots, and a container's root filesystem is a snapshot prepared on
// top of the image's last chain ID.
//
// Invariants:
//   - A snapshot named by a chain ID holds exactly the layers that chain
//     ID names: a layer is applied into a temporary active snapshot, its
//     diff ID checked against the config's, and only then committed under
//     the chain ID. A layer that fails leaves no snapshot (the temporary
//     one is removed; one that a crash left behind has no record a root
//     reaches, so garbage collection removes it).
//   - A layer whose chain ID the snapshotter has already is skipped, and,
//     under a lease, put under it (snapshots.LabelSnapshotRef).
//   - After a successful unpack the image's config blob is labelled
//     berth.io/gc.ref.snapshot.<snapshotter> = the last chain ID, so
//     garbage collection keeps the snapshots as long as the image.
//
// With Options.Ahead, layers above the first may be applied ahead of
// their parents into staging snapshots and adopted in order (stage.go);
// the invariants above hold unchanged, since a chain ID is still committed
// only once its layer is whole on its committed parent.
//
// An unpack runs under a lease, the caller's (leases.WithLease) or one it
// makes (Options.Leases) and deletes when it returns, so that garbage
// collection takes neither the layers being read, nor a snapshot being
// applied, nor the snapshots committed before the config is labelled;
// with neither, Unpack refuses to run.
package unpack
