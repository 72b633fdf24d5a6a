package native

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// CopyTree copies the tree at src to dst, which must not exist: every
// file type, with owners, modes, extended attributes and times; files
// hard-linked together in src are hard-linked together in dst. Symbolic
// links are copied as links, never followed.
func CopyTree(dst, src string) error {
	c := copier{links: map[inode]string{}}
	return c.copy(dst, src)
}

type inode struct{ dev, ino uint64 }

type copier struct {
	links map[inode]string // first copy of each multiply-linked inode
}

func (c *copier) copy(dst, src string) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: src, Err: err}
	}
	mode := st.Mode & unix.S_IFMT
	if mode != unix.S_IFDIR && st.Nlink > 1 {
		in := inode{uint64(st.Dev), st.Ino}
		if first, ok := c.links[in]; ok {
			return os.Link(first, dst)
		}
		c.links[in] = dst
	}
	switch mode {
	case unix.S_IFDIR:
		if err := os.Mkdir(dst, 0o700); err != nil {
			return err
		}
		entries, err := os.ReadDir(src)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := c.copy(filepath.Join(dst, e.Name()), filepath.Join(src, e.Name())); err != nil {
				return err
			}
		}
	case unix.S_IFREG:
		if err := copyFile(dst, src); err != nil {
			return err
		}
	case unix.S_IFLNK:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(target, dst); err != nil {
			return err
		}
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO, unix.S_IFSOCK:
		if err := unix.Mknod(dst, st.Mode&(unix.S_IFMT|0o7777), int(st.Rdev)); err != nil {
			return &os.PathError{Op: "mknod", Path: dst, Err: err}
		}
	default:
		return fmt.Errorf("copy %s: unknown file type %#o", src, mode)
	}
	return copyMetadata(dst, src, &st)
}

// copyFile copies a regular file's bytes; io.Copy between two files uses
// copy_file_range, which shares extents where the filesystem can.
func copyFile(dst, src string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, out.Close()) }()
	_, err = io.Copy(out, in)
	return err
}

// copyMetadata gives dst the owner, xattrs, mode and times of src, in
// that order: chown clears setuid bits, so the mode comes after it, and
// times come last because every other change updates them.
func copyMetadata(dst, src string, st *unix.Stat_t) error {
	if err := unix.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return &os.PathError{Op: "lchown", Path: dst, Err: err}
	}
	isLink := st.Mode&unix.S_IFMT == unix.S_IFLNK
	if err := copyXattrs(dst, src, isLink); err != nil {
		return err
	}
	if !isLink {
		if err := unix.Fchmodat(unix.AT_FDCWD, dst, st.Mode&0o7777, 0); err != nil {
			return &os.PathError{Op: "chmod", Path: dst, Err: err}
		}
	}
	times := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, times, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimes", Path: dst, Err: err}
	}
	return nil
}

// copyXattrs copies every extended attribute of src that dst can take. A
// filesystem without xattrs has none to copy; a symbolic link cannot take
// user.* attributes, so those are skipped on links.
func copyXattrs(dst, src string, isLink bool) error {
	names, err := listXattrs(src)
	if errors.Is(err, unix.ENOTSUP) {
		return nil
	}
	if err != nil {
		return &os.PathError{Op: "llistxattr", Path: src, Err: err}
	}
	for _, name := range names {
		value, err := getXattr(src, name)
		if err != nil {
			return &os.PathError{Op: "lgetxattr " + name, Path: src, Err: err}
		}
		err = unix.Lsetxattr(dst, name, value, 0)
		if err != nil && !(isLink && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOTSUP))) {
			return &os.PathError{Op: "lsetxattr " + name, Path: dst, Err: err}
		}
	}
	return nil
}

func listXattrs(path string) ([]string, error) {
	size, err := unix.Llistxattr(path, nil)
	for err == nil && size > 0 {
		buf := make([]byte, size)
		var n int
		if n, err = unix.Llistxattr(path, buf); err == nil {
			var names []string
			for _, b := range splitNul(buf[:n]) {
				names = append(names, string(b))
			}
			return names, nil
		}
		if errors.Is(err, unix.ERANGE) {
			size, err = unix.Llistxattr(path, nil) // grew meanwhile
		}
	}
	return nil, err
}

func getXattr(path, name string) ([]byte, error) {
	for {
		size, err := unix.Lgetxattr(path, name, nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, size)
		n, err := unix.Lgetxattr(path, name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue // grew meanwhile
		}
		return buf[:n], err
	}
}

func splitNul(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != 0 {
			i++
		}
		if i > 0 {
			out = append(out, b[:i])
		}
		if i == len(b) {
			break
		}
		b = b[i+1:]
	}
	return out
}
