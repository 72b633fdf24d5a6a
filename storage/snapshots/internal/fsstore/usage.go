package fsstore

import (
	"errors"
	"io/fs"
	"path/filepath"
	"syscall"

	"github.com/berthrt/berth/snapshots"
)

// DiskUsage measures the tree at root: every inode once (hard links count
// once), and the bytes allocated to them (st_blocks), as du does.
//
// The tree may be a running container's writable layer: a file or folder
// removed while the walk runs is not counted and is no error (only root
// itself must exist). Only inodes with more than one link are remembered
// to count them once, so the walk's memory follows the hard links, not the
// size of the tree.
func DiskUsage(root string) (snapshots.Usage, error) {
	w := usageWalk{root: root, linked: map[inode]struct{}{}}
	err := filepath.WalkDir(root, w.visit)
	return w.usage, err
}

type inode struct{ dev, ino uint64 }

// usageWalk is the state of one DiskUsage walk.
type usageWalk struct {
	root   string
	usage  snapshots.Usage
	linked map[inode]struct{} // inodes with several links, already counted
}

func (w *usageWalk) visit(path string, d fs.DirEntry, err error) error {
	if err == nil {
		var fi fs.FileInfo
		if fi, err = d.Info(); err == nil {
			w.add(fi)
			return nil
		}
	}
	if errors.Is(err, fs.ErrNotExist) && path != w.root {
		return nil // removed while the walk ran
	}
	return err
}

func (w *usageWalk) add(fi fs.FileInfo) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		w.usage.Inodes++
		w.usage.Size += fi.Size()
		return
	}
	if st.Nlink > 1 && !fi.IsDir() {
		in := inode{uint64(st.Dev), st.Ino}
		if _, ok := w.linked[in]; ok {
			return
		}
		w.linked[in] = struct{}{}
	}
	w.usage.Inodes++
	w.usage.Size += st.Blocks * 512
}
