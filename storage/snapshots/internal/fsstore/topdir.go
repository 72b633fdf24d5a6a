package fsstore

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// fsTopdirFL is FS_TOPDIR_FL of linux/fs.h ('T' in chattr), which
// golang.org/x/sys does not name.
const fsTopdirFL = 0x00020000

// spreadFolders marks dir as the top of a hierarchy (FS_TOPDIR_FL, `chattr
// +T`): ext4's Orlov allocator then places each new folder in dir as it
// places one in the filesystem's root, in the (flex) block group with the
// fewest folders among those with at least the average free inodes and
// blocks, searched from a start that hashes the folder's name, instead of
// near dir. A snapshot's folder is named new-<random> when made, so each
// snapshot lands in a group of its own, and its files follow it there.
//
// Why: on an ext4 without a journal (this project's machines), ext4 does
// not hand out a free inode freed less than 60 s ago (6 min while its
// inode table block is dirty) if another free one is in the group, and it
// reads the inode table to check each one (recently_deleted in
// fs/ext4/ialloc.c); when every free inode of the group is that recent it
// takes the last of them, having checked them all. Without the flag every
// snapshot's folder goes near snapshots/, to the same group, so a layer
// unpacked within a minute of another's removal (an image pulled again, a
// CI machine's next job) pays a scan of thousands of inodes for each file
// it creates, ~250 µs of kernel CPU a file. Measured on the development
// machine (2 CPUs, ext4 without a journal), 20,000 files of 1 to 4 KiB in
// 420 folders made by two threads, removed and made again, four rounds
// each: 3.3 to 9.4 s a round without the flag, 0.26 to 0.49 s with it;
// unpackbench's pull of such a layer: medians of 0.83 to 0.99 s against
// 10.3 to 12.6 s for the build before, and 12.9 to 15.9 s for containerd,
// in the same runs (bench/unpackbench/README.md).
// Setting the flag on a snapshot's fs/ folder instead was little better
// than nothing (0.7 s in the first round, 2.4 to 6.3 s after): it spreads
// the layer's top folders by their names, the same in every round, so
// they land in the groups just freed.
//
// The flag only steers where new folders go; it changes nothing that a
// snapshot holds. A journalled ext4 does not make the recently-deleted
// check; what the flag gains there was not measured. Filesystems that do
// not know the flag refuse it with ENOTTY or EOPNOTSUPP (tmpfs and btrfs
// say EOPNOTSUPP, TestSpreadFoldersUnsupported): spreadFolders returns
// nil for them, and an error only for other failures.
func spreadFolders(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer unix.Close(fd)
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if unsupported(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("get the inode flags of %s: %w", dir, err)
	}
	if flags&fsTopdirFL != 0 {
		return nil
	}
	err = unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags|fsTopdirFL))
	if unsupported(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("set FS_TOPDIR_FL on %s: %w", dir, err)
	}
	return nil
}

// unsupported reports whether err says that the filesystem has no inode
// flags (ENOTTY) or not this one (EOPNOTSUPP).
func unsupported(err error) bool {
	return errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EOPNOTSUPP)
}
