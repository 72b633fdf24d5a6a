package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Compare writes to w an OCI layer tar that turns the tree lower into the
// tree upper: entries added or changed in upper (with their folders),
// ".wh." whiteouts for entries missing from upper, and hardlinks between
// files of upper that share an inode. Both trees must hold still while
// Compare reads them. An entry is changed when its type, mode, owner,
// device, size, modification time, link target or kept xattrs differ;
// a file whose size and modification time stay is taken to keep its
// bytes (overlayfs and cp -p keep times, and a write changes them).
func Compare(ctx context.Context, w io.Writer, lower, upper string) error {
	c := &comparer{
		ctx:   ctx,
		tw:    tar.NewWriter(w),
		lower: lower,
		upper: upper,
		links: map[inode]string{},
		buf:   make([]byte, copyBufferSize),
	}
	if err := c.dir("", true); err != nil {
		return fmt.Errorf("compare %s to %s: %w", lower, upper, err)
	}
	return c.tw.Close()
}

type inode struct{ dev, ino uint64 }

type comparer struct {
	ctx          context.Context
	tw           *tar.Writer
	lower, upper string
	links        map[inode]string // first name written for a multiply linked file
	buf          []byte
}

// dir compares the folder rel of upper with the same folder of lower
// (lowerDir false: lower has no folder there, everything is new).
func (c *comparer) dir(rel string, lowerDir bool) error {
	if err := c.ctx.Err(); err != nil {
		return err
	}
	upperNames, err := readNames(filepath.Join(c.upper, rel))
	if err != nil {
		return err
	}
	var lowerNames []string
	if lowerDir {
		if lowerNames, err = readNames(filepath.Join(c.lower, rel)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	i, j := 0, 0
	for i < len(upperNames) || j < len(lowerNames) {
		switch {
		case i == len(upperNames) || (j < len(lowerNames) && lowerNames[j] < upperNames[i]):
			if err := c.whiteout(path.Join(rel, lowerNames[j])); err != nil {
				return err
			}
			j++
		case j == len(lowerNames) || upperNames[i] < lowerNames[j]:
			if err := c.entry(path.Join(rel, upperNames[i]), false); err != nil {
				return err
			}
			i++
		default:
			if err := c.entry(path.Join(rel, upperNames[i]), true); err != nil {
				return err
			}
			i, j = i+1, j+1
		}
	}
	return nil
}

func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	slices.Sort(names)
	return names, err
}

// entry writes rel if it is new or changed, and walks into it if it is a
// folder.
func (c *comparer) entry(rel string, inLower bool) error {
	u, err := statEntry(filepath.Join(c.upper, rel))
	if err != nil {
		return err
	}
	var l *entryInfo
	if inLower {
		if l, err = statEntry(filepath.Join(c.lower, rel)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if l == nil || !u.same(l) {
		if err := c.write(rel, u); err != nil {
			return err
		}
	}
	if u.mode&unix.S_IFMT == unix.S_IFDIR {
		return c.dir(rel, l != nil && l.mode&unix.S_IFMT == unix.S_IFDIR)
	}
	return nil
}

func (c *comparer) whiteout(rel string) error {
	dir, base := splitName(rel)
	return c.tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg,
		Name:     path.Join(dir, whiteoutPrefix+base),
		ModTime:  time.Unix(0, 0),
	})
}

func (c *comparer) write(rel string, e *entryInfo) error {
	hdr := &tar.Header{
		Name:    rel,
		Mode:    int64(e.mode & 0o7777),
		Uid:     int(e.uid),
		Gid:     int(e.gid),
		ModTime: e.mtime.Truncate(time.Second),
	}
	if len(e.xattrs) > 0 {
		hdr.PAXRecords = map[string]string{}
		for _, x := range e.xattrs {
			hdr.PAXRecords[paxXattrPrefix+x.name] = string(x.value)
		}
	}
	switch e.mode & unix.S_IFMT {
	case unix.S_IFREG:
		if e.nlink > 1 {
			if first, ok := c.links[e.inode]; ok {
				hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
				return c.tw.WriteHeader(hdr)
			}
			c.links[e.inode] = rel
		}
		hdr.Typeflag, hdr.Size = tar.TypeReg, e.size
		return c.writeFile(hdr, filepath.Join(c.upper, rel))
	case unix.S_IFDIR:
		hdr.Typeflag, hdr.Name = tar.TypeDir, rel+"/"
	case unix.S_IFLNK:
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, e.target
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if e.mode&unix.S_IFMT == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(e.rdev)), int64(unix.Minor(e.rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	default:
		return nil // sockets have no tar form
	}
	return c.tw.WriteHeader(hdr)
}

func (c *comparer) writeFile(hdr *tar.Header, name string) error {
	f, err := os.OpenFile(name, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := c.tw.WriteHeader(hdr); err != nil {
		return err
	}
	if _, err := io.CopyBuffer(c.tw, onlyReader{f}, c.buf); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// onlyReader hides an *os.File's WriterTo, so io.CopyBuffer uses the
// buffer given.
type onlyReader struct{ io.Reader }

// entryInfo is what Compare compares of an entry.
type entryInfo struct {
	mode, uid, gid uint32
	nlink          uint64
	rdev           uint64
	size           int64
	mtime          time.Time
	inode          inode
	target         string // a symlink's
	xattrs         []xattr
}

func statEntry(name string) (*entryInfo, error) {
	var st unix.Stat_t
	if err := unix.Lstat(name, &st); err != nil {
		return nil, &os.PathError{Op: "lstat", Path: name, Err: err}
	}
	e := &entryInfo{
		mode: st.Mode, uid: st.Uid, gid: st.Gid, nlink: uint64(st.Nlink), rdev: uint64(st.Rdev),
		size: st.Size, mtime: time.Unix(st.Mtim.Unix()), inode: inode{dev: uint64(st.Dev), ino: st.Ino},
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		t, err := os.Readlink(name)
		if err != nil {
			return nil, err
		}
		e.target = t
	}
	xs, err := readXattrs(name)
	if err != nil {
		return nil, err
	}
	e.xattrs = xs
	return e, nil
}

func (e *entryInfo) same(o *entryInfo) bool {
	if e.mode != o.mode || e.uid != o.uid || e.gid != o.gid || e.target != o.target || len(e.xattrs) != len(o.xattrs) {
		return false
	}
	switch e.mode & unix.S_IFMT {
	case unix.S_IFREG:
		if e.size != o.size {
			return false
		}
	case unix.S_IFCHR, unix.S_IFBLK:
		if e.rdev != o.rdev {
			return false
		}
	}
	if !e.mtime.Equal(o.mtime) {
		return false
	}
	for i := range e.xattrs {
		if e.xattrs[i].name != o.xattrs[i].name || !bytes.Equal(e.xattrs[i].value, o.xattrs[i].value) {
			return false
		}
	}
	return true
}

// readXattrs reads the kept xattrs of name (not following it), in name
// order.
func readXattrs(name string) ([]xattr, error) {
	buf := make([]byte, 4096)
	var n int
	for {
		var err error
		n, err = unix.Llistxattr(name, buf)
		if err == unix.ERANGE {
			buf = make([]byte, len(buf)*2)
			continue
		}
		if err == unix.ENOTSUP {
			return nil, nil
		}
		if err != nil {
			return nil, &os.PathError{Op: "listxattr", Path: name, Err: err}
		}
		break
	}
	var out []xattr
	for _, k := range strings.Split(string(buf[:n]), "\x00") {
		if k == "" || !keptXattr(k) {
			continue
		}
		v := make([]byte, 256)
		for {
			m, err := unix.Lgetxattr(name, k, v)
			if err == unix.ERANGE {
				v = make([]byte, len(v)*4)
				continue
			}
			if err == unix.ENODATA {
				v = nil
				break
			}
			if err != nil {
				return nil, &os.PathError{Op: "getxattr " + k, Path: name, Err: err}
			}
			v = v[:m]
			break
		}
		if v != nil {
			out = append(out, xattr{name: k, value: v})
		}
	}
	slices.SortFunc(out, func(a, b xattr) int { return strings.Compare(a.name, b.name) })
	return out, nil
}
