// Package archive applies OCI layer tars onto folders and writes the
// changes between two folders as an OCI layer tar.
//
// Apply extracts a layer onto a root folder. The layer is hostile input,
// and these invariants hold whatever it contains:
//   - Nothing is created, changed or removed outside root. Entry names are
//     cleaned: a leading "/" is dropped (absolute names are relative to
//     root) and a name whose ".." climbs above root is refused. Every
//     parent path is resolved by the kernel with openat2(RESOLVE_IN_ROOT),
//     so a symlink met on the way (absolute, relative, chained, or made by
//     an earlier entry of the same layer) is followed as if root were "/",
//     never out of it; the last component is created, changed or removed
//     relative to its resolved parent without following it. A missing
//     parent is created inside root, through a dangling symlink too.
//   - A hardlink's target is resolved the same way; a link name whose ".."
//     climbs above root is refused. Linux 5.6 or later is required
//     (openat2); an older kernel gets ErrNotImplemented.
//   - A name, link name or path component containing NUL is refused, as is
//     a whiteout that names ".", ".." or nothing.
//   - Limits bound what a layer may ask for (entries, name length, xattr
//     size, the size a sparse file expands to); exceeding one fails Apply
//     with ErrInvalidArgument. archive/tar bounds PAX and GNU long-name
//     headers to 1 MiB.
//
// Policy for what a layer may create:
//   - Character and block devices are skipped unless WithDevices is given
//     (and then need CAP_MKNOD). A runtime mounts its own /dev over the
//     image's, so an image loses nothing it can use. FIFOs are always made.
//   - Setuid, setgid and sticky bits are kept (images need su, ping,
//     passwd); WithoutSetuid clears setuid and setgid. Modes are set after
//     ownership and data, so chown(2) and writes do not clear them.
//   - Ownership is applied when running as root (uid 0) and left to the
//     caller otherwise.
//   - Xattrs (PAX SCHILY.xattr.*) are kept for user.*, security.capability
//     and system.posix_acl_{access,default}; every other name (trusted.*,
//     which would let a layer forge overlay metadata, security.selinux,
//     security.ima, …) is dropped. A filesystem without xattr support
//     (ENOTSUP) drops them too.
//   - Modification and access times are kept (access time defaults to the
//     modification time); a folder's times are set after all entries, so
//     its contents do not change them.
//
// Whiteouts: an OCI whiteout ".wh.NAME" and the opaque marker
// ".wh..wh..opq" are translated to the target's convention. Plain (the
// default, for a full tree such as the native snapshotter's or a mounted
// overlay) deletes NAME and empties the folder of everything not added by
// this layer. Overlay (for writing into an overlay upper folder directly)
// makes a 0/0 character device NAME and sets trusted.overlay.opaque=y on
// the folder; WithParents names the lower folders, from which missing
// parents take their metadata and hardlink targets are copied up. Other
// ".wh..wh." names (aufs metadata) are skipped.
//
// Compare walks two trees (typically two mounted snapshots) and writes an
// OCI layer tar that turns the first into the second: added and changed
// entries, whiteouts for deletions, hardlinks for files that share an inode
// in the upper tree. Times are written to the second and access times are
// left out, so the same trees give the same tar. Compare may read a tree
// that changes meanwhile (a running container's): it walks by descriptors,
// one name at a time below the folder it holds open, never following a
// symlink (openat2, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), and reads a
// file through the descriptor it examined, so nothing outside the trees
// gets into the layer, whatever is swapped during the walk.
//
// Cost: an entry's folder is kept open for the entries after it in the
// same folder, and a file that needs no owner, mode or xattrs set apart
// is created with its mode: a small file costs open, write, futimens and
// close. A name is created first and removed only when it exists already.
// Small regular files (up to 1 MiB, 16 MiB in flight) are made by
// workers, one per CPU, while the layer is read on, different folders in
// parallel; what each entry does and the result are those of applying
// the entries one after the other (parallel.go says how), and Apply
// returns only once every file is made.
//
// Known limits: the resolution of a parent and the operation on its last
// component are separate system calls, so root must not be changed by
// anyone untrusted while Apply runs (berth applies into snapshots that no
// container uses yet). The process's umask, read once per Apply, must not
// change while Apply runs (berthd and berth-shim set it only before they
// serve).
package archive
