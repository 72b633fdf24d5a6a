// Package fsstore is the part that the on-disk snapshotters (overlay,
// native) share: the bbolt metadata that maps keys to numbered folders and
// parent chains, the folders' lifecycle, and the Snapshotter methods over
// them. A Driver adds what differs: how a new folder is filled and how it
// is mounted; a Sealer makes a committed snapshot's files read-only, a
// Remover removes folders that os.RemoveAll cannot (btrfs subvolumes).
//
// # Layout
//
//	<root>/metadata.db                 bbolt, below
//	<root>/snapshots/<id>/             one folder per snapshot; the driver's
//	<root>/snapshots/new-*/, rm-*/     being created, being removed
//
// snapshots/ carries ext4's FS_TOPDIR_FL where the filesystem knows it, so
// that each snapshot's folder lands in a block group of its own
// (spreadFolders says why).
//
//	v1/
//	  keys/<key>/                      one bucket per snapshot, by key or name
//	    id      → uint64, big endian   its folder, snapshots/<id>
//	    kind    → one byte (snapshots.Kind)
//	    parent  → key                  absent when none
//	    created, updated → time.Time.MarshalBinary, UTC
//	    inodes, size → varint          committed snapshots only
//	    labels/ <key> → <value>
//	  children/<parent key>/<child key> → ""
//	  ids/<id> → key                   every folder that must exist; its
//	                                   sequence numbers the next one
//
// # Invariants
//
//   - Keys are bbolt keys only; folders are named by number. An id is
//     never reused: bbolt's bucket sequence only grows.
//   - A snapshot exists once its record is committed, and its folder exists
//     then: Prepare fills a new-* folder first and renames it to its id
//     inside the transaction that records it.
//   - Commit syncs the filesystem of the snapshot's folder (syncfs)
//     before the transaction that marks it committed: a committed
//     snapshot's files are on disk.
//   - A Sealer seals a snapshot's folder just before the transaction
//     that marks it committed, and unseals it when that transaction
//     fails; New unseals every active snapshot, so a crash between the
//     seal and the transaction leaves no active snapshot sealed.
//   - Remove deletes the record in one transaction, then the folder; Open
//     removes every folder under snapshots/ that ids does not name, which
//     finishes whatever a crash interrupted.
package fsstore
