// Package overlay is the default snapshotter: one folder per snapshot,
// mounted as overlayfs.
//
// # Layout
//
// New(root) keeps its bbolt metadata in <root>/metadata.db and a snapshot's
// files in <root>/snapshots/<id>/fs, with <root>/snapshots/<id>/work as
// overlayfs's work folder for an active snapshot (package
// storage/snapshots/internal/fsstore draws the rest). berthd's root for it
// is /var/lib/berth/snapshots/overlayfs.
//
// # Mounts
//
//   - Active, no parent: a read-write bind mount of its fs.
//   - Active with parents: overlay, upperdir its fs, workdir its work,
//     lowerdir the parents' fs, nearest first.
//   - View of one committed snapshot: a read-only bind mount of the
//     parent's fs (overlay needs two lower folders without an upper one).
//   - View of a longer chain: overlay with lowerdir only, read-only by
//     nature.
//
// index=off is passed where the kernel has the option, so that one lower
// folder may serve many mounts at once. A long chain's lowerdir may exceed
// a page; package mount then mounts from the folder the lower folders
// share, with relative paths.
//
// # Whiteouts
//
// A committed layer holds deletions the way overlayfs reads them: a
// removed file is a character device 0/0 of its name, and an opaque folder
// (its lower contents hidden) carries the xattr trusted.overlay.opaque="y".
// Writing them when a layer is applied is the layer applier's job, not
// this package's; overlayfs itself writes them into an active snapshot's
// upper folder as files are removed.
//
// # Requirements
//
// The root must be on a filesystem that overlayfs accepts as upper (ext4,
// xfs with d_type, tmpfs), and its path must not hold ',', ':' or '\',
// which overlay's options cannot carry.
package overlay
