// Package snapshots defines the snapshotter: the store of the layered
// filesystems that image layers are unpacked into and containers run on,
// in the shape containerd's users know.
//
// # Lifecycle
//
// A snapshot is one of three kinds. Prepare makes an active snapshot, a
// writable filesystem on top of an optional committed parent; Commit turns
// an active snapshot into a committed one under a new name, read-only from
// then on and usable as a parent; View makes a view, a read-only
// filesystem of a committed parent that can never be committed. Mounts
// says how to mount an active snapshot or a view: a list of mount.Mount to
// apply in order at one target, such as a bind mount or an overlay. Remove
// removes a snapshot that no other snapshot has for parent.
//
//	Prepare(key, parent) ─► active ──Commit(name, key)──► committed
//	View(key, parent)    ─► view                            │
//	                                                 parent of the next
//
// Keys and names share one space per snapshotter: a key taken by an active
// snapshot or a view cannot be a committed snapshot's name, and the other
// way round.
//
// # Keys
//
// Keys are arbitrary strings chosen by callers (an unpacker names a layer
// by its chain ID, "sha256:…"), not identifiers: ValidateKey bounds their
// length and refuses NUL and invalid UTF-8, nothing more. A snapshotter
// must therefore never use a key in a path; it maps keys to ids of its own.
//
// # Errors
//
// Errors wrap the classes of package errdefs: an absent key is
// ErrNotFound, a key or name that exists ErrAlreadyExists, a parent that is
// not committed ErrInvalidArgument (as containerd), a Commit of a
// snapshot that is not active and a Remove of a snapshot that has children
// ErrFailedPrecondition.
//
// # Implementations
//
// This package is the vocabulary (Snapshotter, Info, Kind, Usage, the key
// and label rules) and imports no store. The implementations live below
// storage/snapshots: overlay (the default, one folder per layer mounted as
// overlayfs), native (full copies, for filesystems without overlay) and
// btrfs (subvolumes) keep their own metadata in a bbolt file beside their
// folders. None knows namespaces: storage/metadata gives each namespace its own view of
// a snapshotter (DB.Snapshotter). Package proxy is a Snapshotter over the
// snapshots API, for the client library and for the daemon's external
// snapshotters. storage/snapshots/snapshotstest is the suite every
// implementation runs.
package snapshots
