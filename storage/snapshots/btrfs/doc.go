// Package btrfs is the snapshotter for a root on a btrfs filesystem: every
// snapshot is a subvolume, and a layer's child is a copy-on-write snapshot
// of it, made in constant time whatever the layer's size, sharing its
// extents.
//
// # Layout
//
// New(root) keeps its bbolt metadata in <root>/metadata.db and a
// snapshot's files in the subvolume <root>/snapshots/<id>/fs (package
// storage/snapshots/internal/fsstore draws the rest); berthd's root for it
// is /var/lib/berth/snapshots/btrfs, which must be on btrfs (the whole of
// /var/lib, or a btrfs mounted there).
//
// # Snapshots
//
//   - Active, no parent: a new empty subvolume, mounted with a read-write
//     bind mount.
//   - Active with a parent: a writable snapshot of the parent's
//     subvolume, mounted the same way.
//   - Committed: the active snapshot's subvolume with btrfs's read-only
//     flag set at commit (no second subvolume, no copy). Nothing can write
//     to a layer that children are snapshots of, root included.
//   - View of a parent: a read-only bind mount of the parent's read-only
//     subvolume; a view makes no subvolume of its own. A view without a
//     parent is an empty read-only subvolume.
//
// Whiteouts mean nothing here, as with native: a layer applier removes
// deleted files from the snapshot instead of marking them.
//
// # Usage
//
// Inodes are counted by a walk of the subvolume. Bytes come from btrfs's
// quota groups when quotas are enabled on the filesystem (btrfs quota
// enable) and consistent: the subvolume's exclusive bytes, what it holds
// that its parent does not, after a syncfs brings the counts up to date.
// Without quotas bytes are the walk's allocated blocks, which count
// extents shared with the parent as the snapshot's own (as native does).
// Quotas are left to the operator: they cost on every write.
//
// # Removal
//
// Remove deletes the subvolume with BTRFS_IOC_SNAP_DESTROY, read-only or
// not; the kernel frees its extents in the background. A subvolume that
// holds others (a privileged container may create one in its root
// filesystem) is refused by the kernel: Remove then makes it writable,
// finds the nested subvolumes with a walk and deletes them, the deepest
// first, and then it.
//
// # Crashes
//
// Commit sets the read-only flag just before the metadata transaction
// that marks the snapshot committed. A crash between the two leaves an
// active snapshot read-only; New clears the flag of every active snapshot
// (package fsstore), so its container or unpack can write again and a
// second Commit goes through.
//
// # Why ioctls
//
// The package calls the kernel's btrfs ioctls through golang.org/x/sys/unix
// (subvolume create, snapshot, destroy, get and set flags, inode lookup,
// tree search), without cgo and libbtrfs: the daemon builds with no C
// headers, and the calls are a stable kernel ABI.
package btrfs
