// Package native is the snapshotter for filesystems without overlay: every
// snapshot is a full copy of its parent, mounted with a bind mount.
//
// New(root) keeps its bbolt metadata in <root>/metadata.db and a
// snapshot's files in <root>/snapshots/<id>/fs (package
// storage/snapshots/internal/fsstore draws the rest); berthd's root for it
// is /var/lib/berth/snapshots/native.
//
// Prepare and View copy the parent's tree: modes (setuid included),
// owners, extended attributes, access and modification times, hard links
// (as links), symbolic links, device nodes, FIFOs and sockets. An active
// snapshot mounts as a read-write bind mount of its fs, a view as a
// read-only one. Usage is the whole copy: a native snapshot shares nothing
// with its parent.
//
// Whiteouts mean nothing here: a layer applier removes deleted files from
// the copy instead of marking them.
package native
