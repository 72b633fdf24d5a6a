package fsstore

import (
	"io/fs"
	"path/filepath"
	"syscall"

	"github.com/berthrt/berth/snapshots"
)

// DiskUsage measures the tree at root: every inode once (hard links count
// once), and the bytes allocated to them (st_blocks), as du does.
func DiskUsage(root string) (snapshots.Usage, error) {
	type inode struct{ dev, ino uint64 }
	seen := map[inode]struct{}{}
	var u snapshots.Usage
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			u.Inodes++
			u.Size += fi.Size()
			return nil
		}
		in := inode{uint64(st.Dev), st.Ino}
		if _, ok := seen[in]; ok {
			return nil
		}
		seen[in] = struct{}{}
		u.Inodes++
		u.Size += st.Blocks * 512
		return nil
	})
	return u, err
}
