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
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/errdefs"
)

// Compare writes to w an OCI layer tar that turns the tree lower into the
// tree upper: entries added or changed in upper (with their folders),
// ".wh." whiteouts for entries missing from upper, and hardlinks between
// files of upper that share an inode. An entry is changed when its type,
// mode, owner, device, size, modification time, link target or kept
// xattrs differ; a file whose size and modification time stay is taken
// to keep its bytes (overlayfs and cp -p keep times, and a write changes
// them).
//
// The trees may change while Compare reads them (a running container's
// snapshot): it walks them by descriptors, one name at a time from the
// folder above (openat2 with RESOLVE_BENEATH and RESOLVE_NO_SYMLINKS), and
// never follows a symlink, so a folder swapped for a symlink to / during
// the walk is written as the symlink it became, and nothing outside the
// trees is ever read. An entry removed during the walk is left out (or
// whited out, when lower has it); the layer then shows the tree as it was
// at some point of the walk, entry by entry.
func Compare(ctx context.Context, w io.Writer, lower, upper string) error {
	c := &comparer{
		ctx:   ctx,
		tw:    tar.NewWriter(w),
		links: map[inode]string{},
		buf:   make([]byte, copyBufferSize),
	}
	upperFd, err := unix.Open(upper, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("compare %s to %s: %w", lower, upper, &os.PathError{Op: "open", Path: upper, Err: err})
	}
	defer unix.Close(upperFd)
	lowerFd, err := unix.Open(lower, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		lowerFd = -1
	} else if err != nil {
		return fmt.Errorf("compare %s to %s: %w", lower, upper, &os.PathError{Op: "open", Path: lower, Err: err})
	} else {
		defer unix.Close(lowerFd)
	}
	if err := c.dir("", upperFd, lowerFd); err != nil {
		return fmt.Errorf("compare %s to %s: %w", lower, upper, err)
	}
	return c.tw.Close()
}

type inode struct{ dev, ino uint64 }

type comparer struct {
	ctx   context.Context
	tw    *tar.Writer
	links map[inode]string // first name written for a multiply linked file
	buf   []byte
}

// dir compares the folder rel, open as upper, with the same folder of
// lower (-1: lower has no folder there, everything is new).
func (c *comparer) dir(rel string, upper, lower int) error {
	if err := c.ctx.Err(); err != nil {
		return err
	}
	if len(rel) >= unix.PathMax {
		return fmt.Errorf("%.64s…: a path of %d bytes or more: %w", rel, unix.PathMax, errdefs.ErrInvalidArgument)
	}
	upperNames, err := readNames(upper, rel)
	if err != nil {
		return err
	}
	var lowerNames []string
	if lower >= 0 {
		if lowerNames, err = readNames(lower, rel); err != nil {
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
			if err := c.entry(rel, upperNames[i], upper, -1); err != nil {
				return err
			}
			i++
		default:
			if err := c.entry(rel, upperNames[i], upper, lower); err != nil {
				return err
			}
			i, j = i+1, j+1
		}
	}
	return nil
}

// readNames lists the folder fd (O_PATH) in name order.
func readNames(fd int, rel string) ([]string, error) {
	dfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: rel, Err: err}
	}
	f := os.NewFile(uintptr(dfd), rel)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	slices.Sort(names)
	return names, err
}

// entry writes the entry name of the folder rel (open as upperDir) if it
// is new or changed from the one in lowerDir (-1: none), and walks into
// it if it is a folder.
func (c *comparer) entry(rel, name string, upperDir, lowerDir int) error {
	rel = path.Join(rel, name)
	u, err := openEntry(upperDir, name, rel)
	if errors.Is(err, fs.ErrNotExist) {
		// Removed while compared: as if it had been gone before.
		if lowerDir >= 0 {
			if l, err := openEntry(lowerDir, name, rel); err == nil {
				l.close()
				return c.whiteout(rel)
			}
		}
		return nil
	} else if err != nil {
		return err
	}
	defer u.close()
	var l *entryInfo
	if lowerDir >= 0 {
		l, err = openEntry(lowerDir, name, rel)
		if errors.Is(err, fs.ErrNotExist) {
			l = nil
		} else if err != nil {
			return err
		} else {
			defer l.close()
		}
	}
	if l == nil || !u.same(l) {
		if err := c.write(rel, u); err != nil {
			return err
		}
	}
	if u.mode&unix.S_IFMT == unix.S_IFDIR {
		lowerFd := -1
		if l != nil && l.mode&unix.S_IFMT == unix.S_IFDIR {
			lowerFd = l.fd
		}
		return c.dir(rel, u.fd, lowerFd)
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
		return c.writeFile(hdr, e)
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

// writeFile writes the regular file e with hdr, reading the inode e holds
// (reopened through its descriptor, never by name). A file that grows or
// shrinks meanwhile fails the tar writer or the copy.
func (c *comparer) writeFile(hdr *tar.Header, e *entryInfo) error {
	f, err := os.OpenFile(procFdPath(e.fd), os.O_RDONLY|unix.O_NOCTTY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := c.tw.WriteHeader(hdr); err != nil {
		return err
	}
	if n, err := io.CopyBuffer(c.tw, onlyReader{f}, c.buf); err != nil {
		return fmt.Errorf("%s: %w", hdr.Name, err)
	} else if n != hdr.Size {
		return fmt.Errorf("%s: %d bytes read, %d expected: the file changed while compared", hdr.Name, n, hdr.Size)
	}
	return nil
}

// onlyReader hides an *os.File's WriterTo, so io.CopyBuffer uses the
// buffer given.
type onlyReader struct{ io.Reader }

// entryInfo is what Compare compares of an entry, and the O_PATH
// descriptor it was read through.
type entryInfo struct {
	fd             int
	mode, uid, gid uint32
	nlink          uint64
	rdev           uint64
	size           int64
	mtime          time.Time
	inode          inode
	target         string // a symlink's
	xattrs         []xattr
}

// openEntry opens name, one component, in the folder dir without
// following a symlink (the descriptor is the symlink's, then) and reads
// what Compare compares from the descriptor. rel names it in errors.
func openEntry(dir int, name, rel string) (*entryInfo, error) {
	fd, err := openat2Retry(dir, name, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS,
	})
	if err != nil {
		return nil, &os.PathError{Op: "openat2", Path: rel, Err: err}
	}
	e := &entryInfo{fd: fd}
	if err := e.read(rel); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func (e *entryInfo) read(rel string) error {
	var st unix.Stat_t
	if err := unix.Fstat(e.fd, &st); err != nil {
		return &os.PathError{Op: "fstat", Path: rel, Err: err}
	}
	e.mode, e.uid, e.gid, e.nlink, e.rdev = st.Mode, st.Uid, st.Gid, uint64(st.Nlink), uint64(st.Rdev)
	e.size, e.mtime, e.inode = st.Size, time.Unix(st.Mtim.Unix()), inode{dev: uint64(st.Dev), ino: st.Ino}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(e.fd, "", buf)
		if err != nil {
			return &os.PathError{Op: "readlink", Path: rel, Err: err}
		}
		e.target = string(buf[:n])
		// A symlink has none of the kept xattrs (user.* and ACLs are
		// refused on symlinks, capabilities are for files), and its
		// /proc path would be followed.
		return nil
	}
	xs, err := readXattrs(procFdPath(e.fd), rel)
	if err != nil {
		return err
	}
	e.xattrs = xs
	return nil
}

func (e *entryInfo) close() { unix.Close(e.fd) }

// openat2Retry is openat2 again while a rename elsewhere makes the
// kernel ask for a retry.
func openat2Retry(dir int, name string, how *unix.OpenHow) (int, error) {
	for {
		fd, err := unix.Openat2(dir, name, how)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err == unix.ENOSYS {
			return -1, fmt.Errorf("openat2: %w (needs Linux 5.6 or later)", errdefs.ErrNotImplemented)
		}
		return fd, err
	}
}

// procFdPath is the magic link of descriptor fd: a path that reaches
// exactly its inode, whatever happened to its name.
func procFdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

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

// readXattrs reads the kept xattrs of the inode at p, a descriptor's
// magic link (followed to its inode, which is never a symlink here), in
// name order; rel names it in errors.
func readXattrs(p, rel string) ([]xattr, error) {
	buf := make([]byte, 4096)
	var n int
	for {
		var err error
		n, err = unix.Listxattr(p, buf)
		if err == unix.ERANGE {
			buf = make([]byte, len(buf)*2)
			continue
		}
		if err == unix.ENOTSUP {
			return nil, nil
		}
		if err != nil {
			return nil, &os.PathError{Op: "listxattr", Path: rel, Err: err}
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
			m, err := unix.Getxattr(p, k, v)
			if err == unix.ERANGE {
				v = make([]byte, len(v)*4)
				continue
			}
			if err == unix.ENODATA {
				v = nil
				break
			}
			if err != nil {
				return nil, &os.PathError{Op: "getxattr " + k, Path: rel, Err: err}
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
