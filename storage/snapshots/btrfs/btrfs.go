package btrfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/mount"
	"github.com/berthrt/berth/snapshots"
	"github.com/berthrt/berth/storage/snapshots/internal/fsstore"
)

// Name is the snapshotter's name, in lease resources and GC labels.
const Name = "btrfs"

// New opens the btrfs snapshotter whose files live in root, an absolute
// path on a btrfs filesystem; see the package documentation. On another
// filesystem it fails with ErrNotImplemented and touches nothing.
func New(root string) (snapshots.Snapshotter, error) {
	if err := Supported(root); err != nil {
		return nil, err
	}
	return fsstore.New(Name, root, driver{})
}

// Supported returns nil when root is on btrfs, else an error that says
// what root is on, of class ErrNotImplemented.
func Supported(root string) error {
	var fs unix.Statfs_t
	if err := unix.Statfs(root, &fs); err != nil {
		return fmt.Errorf("%s: %w", Name, &os.PathError{Op: "statfs", Path: root, Err: err})
	}
	if fs.Type != unix.BTRFS_SUPER_MAGIC {
		return fmt.Errorf("%s: %s is not on a btrfs filesystem (filesystem magic %#x); mount one there to use it: %w",
			Name, root, fs.Type, errdefs.ErrNotImplemented)
	}
	return nil
}

// CheckFolders lists, read-only, the folders under root that no snapshot
// names and the snapshots whose folder is gone; see fsstore.CheckFolders.
func CheckFolders(root string) (unknown, missing []string, err error) {
	return fsstore.CheckFolders(root)
}

type driver struct{}

// fsDir is the subvolume of the snapshot in dir.
func fsDir(dir string) string { return filepath.Join(dir, "fs") }

func (driver) Create(dir string, kind snapshots.Kind, parents []string) error {
	switch {
	case kind == snapshots.KindView && len(parents) > 0:
		// It mounts its parent's read-only subvolume; an empty folder
		// stands for the nothing it holds of its own.
		return os.Mkdir(fsDir(dir), 0o755)
	case len(parents) > 0:
		return snapshotSubvolume(fsDir(dir), fsDir(parents[0]), false)
	}
	if err := createSubvolume(fsDir(dir)); err != nil {
		return err
	}
	if kind == snapshots.KindView {
		return setReadOnly(fsDir(dir), true)
	}
	return nil
}

func (driver) Mounts(dir string, kind snapshots.Kind, parents []string) []mount.Mount {
	if kind == snapshots.KindView {
		src := fsDir(dir)
		if len(parents) > 0 {
			src = fsDir(parents[0])
		}
		return []mount.Mount{{Type: "bind", Source: src, Options: []string{"rbind", "ro"}}}
	}
	return []mount.Mount{{Type: "bind", Source: fsDir(dir), Options: []string{"rbind", "rw"}}}
}

// Usage counts inodes with a walk of the subvolume; bytes are the
// subvolume's exclusive bytes from its qgroup when quotas are on and
// consistent, else the walk's allocated bytes (which then count extents
// shared with the parent too).
func (driver) Usage(dir string) (snapshots.Usage, error) {
	u, err := fsstore.DiskUsage(fsDir(dir))
	if err != nil {
		return snapshots.Usage{}, err
	}
	if sub, err := isSubvolume(fsDir(dir)); err != nil || !sub {
		return u, err
	}
	excl, err := exclusiveBytes(fsDir(dir))
	switch {
	case err == nil:
		u.Size = excl
	case !errors.Is(err, errNoQuota):
		return snapshots.Usage{}, err
	}
	return u, nil
}

// Seal makes a committed snapshot's subvolume read-only: children are
// snapshots of it, and nothing may change a layer under them. Unsealing
// a subvolume that is writable changes nothing.
func (driver) Seal(dir string, sealed bool) error {
	return setReadOnly(fsDir(dir), sealed)
}

// RemoveAll deletes dir's subvolume, if it has one, with every subvolume
// nested in it, then dir. The subvolume may be read-only, which
// os.RemoveAll could not empty.
func (driver) RemoveAll(dir string) error {
	sub, err := isSubvolume(fsDir(dir))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if sub {
		if err := deleteSubvolumeTree(fsDir(dir)); err != nil {
			return err
		}
	}
	return os.RemoveAll(dir)
}

// deleteSubvolumeTree deletes the subvolume path and the subvolumes
// nested in it, the deepest first: btrfs refuses to delete a subvolume
// that holds another (ENOTEMPTY), and a privileged container may make one
// in its root filesystem (btrfs subvolume create, or a snapshot). Only
// then does it walk the tree: a subvolume that holds none is deleted at
// once. A read-only subvolume (a committed layer) is made writable first,
// since deleting a subvolume writes the folder that holds it.
func deleteSubvolumeTree(path string) error {
	err := deleteSubvolume(path)
	if !errors.Is(err, unix.ENOTEMPTY) {
		return err
	}
	if err := setReadOnly(path, false); err != nil {
		return err
	}
	var nested []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == path || !d.IsDir() {
			return nil
		}
		sub, err := isSubvolume(p)
		if err != nil {
			return err
		}
		if sub {
			nested = append(nested, p)
			return filepath.SkipDir // its own call deletes what it holds
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("subvolumes nested in %s: %w", path, err)
	}
	for _, p := range nested {
		if err := deleteSubvolumeTree(p); err != nil {
			return err
		}
	}
	return deleteSubvolume(path)
}
