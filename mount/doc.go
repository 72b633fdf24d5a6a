// Package mount performs the mounts that make up a container's root
// filesystem and undoes them.
//
// A Mount is one mount(2) described fstab-style: a type, a source, a target
// relative to a root, and options. Options that are mount flags (ro, nosuid,
// bind, rprivate, …) become flags; the rest are passed to the filesystem as
// its data, joined by commas, in the order given.
//
// Invariants:
//   - All never mounts outside root: each Target is resolved with
//     securejoin, so "..", absolute symlinks and relative symlinks that climb
//     out are all confined to root. The resolution is done before the mount
//     and is not atomic with it, so root must not be changed by anyone
//     untrusted while All runs (it runs before the container starts).
//   - All is all-or-nothing: when a mount fails, the mounts it made are
//     unmounted in reverse order and the error names the failing mount and
//     joins any rollback errors.
//   - Mount is all-or-nothing too: a bind mount whose read-only (or nosuid,
//     nodev, …) remount step or a propagation change fails is unmounted
//     again before the error is returned.
//   - UnmountAll leaves nothing mounted at or below its target that it could
//     reach, unmounts deeper mounts before shallower ones and stacked mounts
//     top first, and succeeds when nothing was mounted.
//
// Long overlays: the filesystem data must fit in one page (mount(2) copies
// no more). When an overlay's data does not, its lower folders are made
// relative to the deepest folder they share and the mount is made from
// there (on a thread with a working folder of its own), as containerd
// does; snapshotters keep their layers side by side, so a layer then costs
// a few bytes ("12/fs:") instead of a full path.
//
// Known limits: data that is still longer than a page is refused; a
// read-only bind remount inside a user namespace fails if it would clear a
// flag that the source mount has locked (pass those flags too).
package mount
