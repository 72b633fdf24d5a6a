package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/writeback"
)

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"

	overlayOpaqueXattr = "trusted.overlay.opaque"
	paxXattrPrefix     = "SCHILY.xattr."

	copyBufferSize = 1 << 20
	sparseBlock    = 4 << 10 // holes are left where a whole block is zero
)

// Apply extracts the layer tar read from r onto root, an existing folder,
// and returns the number of bytes read from r (the whole stream, the
// padding after the end of the archive included). See the package
// documentation for what it guarantees about hostile layers. On error,
// root may hold part of the layer.
func Apply(ctx context.Context, root string, r io.Reader, opts ...ApplyOpt) (int64, error) {
	o := applyOptions{limits: DefaultLimits}
	for _, opt := range opts {
		opt(&o)
	}
	t, err := openTree(root)
	if err != nil {
		return 0, err
	}
	defer t.close()
	a := &applier{
		opts:   o,
		tree:   t,
		root:   root,
		owner:  os.Geteuid() == 0,
		uid:    os.Geteuid(),
		gid:    os.Getegid(),
		umask:  currentUmask(),
		buf:    make([]byte, copyBufferSize),
		parent: parentDir{fd: -1},
	}
	if n := applyWorkers(); n >= 2 {
		a.workers = startWorkers(a, n)
	}
	defer a.forgetParent()
	if o.convention == Plain {
		a.unpacked = map[string]struct{}{}
	}
	if o.madeParents != nil {
		a.made = map[string]struct{}{}
	}
	cr := &countingReader{r: r}
	if err := a.apply(ctx, tar.NewReader(cr)); err != nil {
		return cr.n, fmt.Errorf("apply layer onto %s: %w", root, err)
	}
	// The rest (end-of-archive blocks, padding) counts in the size.
	if _, err := io.CopyBuffer(io.Discard, cr, a.buf); err != nil {
		return cr.n, fmt.Errorf("apply layer onto %s: %w", root, err)
	}
	if o.madeParents != nil {
		o.madeParents(slices.Sorted(maps.Keys(a.made)))
	}
	return cr.n, nil
}

type applier struct {
	opts     applyOptions
	tree     *tree
	root     string
	owner    bool // running as root: ownership is applied
	uid, gid int  // what a new file is owned by, unless its folder says otherwise
	umask    int  // the process's, -1 when unknown
	buf      []byte

	// parent is the folder of the last entry, kept open for the next
	// entries in the same folder (most of a layer); see parentDir.
	parent parentDir

	// unpacked holds the names this layer made (Plain only): an opaque
	// marker keeps them.
	unpacked map[string]struct{}
	// dirs are the folders whose times are set at the end.
	dirs []dirTimes
	// made holds the folders mkdirAll made that no entry has described
	// since (WithMadeParents only).
	made map[string]struct{}

	// workers create small files (parallel.go); nil when there are none.
	workers *workers
	// index is the number of the entry being applied.
	index int
}

type dirTimes struct {
	name         string
	atime, mtime time.Time
}

func (a *applier) apply(ctx context.Context, tr *tar.Reader) error {
	err := a.entries(ctx, tr)
	if a.workers != nil {
		// Every file is made, or every worker has stopped, before
		// Apply returns, and before the folders' times are set.
		windex, werr := a.workers.stop()
		a.workers = nil
		if werr != nil && (err == nil || windex < a.index) {
			err = werr
		}
	}
	if err != nil {
		return err
	}
	for i := len(a.dirs) - 1; i >= 0; i-- {
		d := a.dirs[i]
		dir, base := splitName(d.name)
		fd, err := a.tree.openDir(dir)
		if err != nil {
			return err
		}
		err = setTimes(fd, base, d.atime, d.mtime)
		unix.Close(fd)
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("folder %q: %w", d.name, err)
		}
	}
	return nil
}

// entries applies the layer's entries, or hands them to the workers.
func (a *applier) entries(ctx context.Context, tr *tar.Reader) error {
	entries := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if a.workers != nil && a.workers.failed.Load() {
			return nil // apply reports the workers' failure
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read tar: %w: %w", err, errdefs.ErrInvalidArgument)
		}
		entries++
		a.index = entries
		if entries > a.opts.limits.MaxEntries {
			return fmt.Errorf("more than %d entries: %w", a.opts.limits.MaxEntries, errdefs.ErrInvalidArgument)
		}
		if err := a.entry(hdr, tr); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	}
	return nil
}

func (a *applier) entry(hdr *tar.Header, tr *tar.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	name, err := cleanName(hdr.Name, a.opts.limits.MaxNameLen)
	if err != nil {
		return err
	}
	if name == "" {
		return nil // root's own metadata is the snapshotter's
	}
	if len(hdr.Linkname) > a.opts.limits.MaxNameLen || strings.IndexByte(hdr.Linkname, 0) >= 0 {
		return fmt.Errorf("link name of %d bytes, or with NUL: %w", len(hdr.Linkname), errdefs.ErrInvalidArgument)
	}
	xattrs, err := a.xattrs(hdr)
	if err != nil {
		return err
	}
	dir, base := splitName(name)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return a.whiteout(hdr, dir, base)
	}

	p, err := a.parentOf(dir)
	if err != nil {
		return err
	}
	parent := p.fd
	if a.workers != nil && (hdr.Typeflag == tar.TypeLink || a.workers.busy(joinName(p.canon, base), a.toWorker(hdr, joinName(p.canon, base)))) {
		// A name in flight, a folder with files in flight, or a
		// hardlink whose target may be in flight (parallel.go).
		if err := a.drain(); err != nil {
			return err
		}
	}
	if a.unpacked != nil {
		a.unpacked[name] = struct{}{}
	}

	mode := uint32(hdr.Mode) & 0o7777
	if a.opts.noSetuid {
		mode &^= unix.S_ISUID | unix.S_ISGID
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		return a.regular(hdr, tr, p, base, mode, xattrs)
	case tar.TypeDir:
		return a.dir(hdr, p, name, base, mode, xattrs)
	case tar.TypeSymlink:
		err := replacing(parent, base, func() error { return unix.Symlinkat(hdr.Linkname, parent, base) })
		if err != nil {
			return &os.PathError{Op: "symlink", Path: name, Err: err}
		}
		return a.metaAt(hdr, parent, base, xattrs)
	case tar.TypeLink:
		return a.hardlink(hdr, name, parent, base)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		kind := uint32(unix.S_IFIFO)
		switch hdr.Typeflag {
		case tar.TypeChar:
			kind = unix.S_IFCHR
		case tar.TypeBlock:
			kind = unix.S_IFBLK
		}
		if kind != unix.S_IFIFO && !a.opts.devices {
			return nil // policy: devices only WithDevices
		}
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		if err := replacing(parent, base, func() error { return unix.Mknodat(parent, base, kind|0o600, int(dev)) }); err != nil {
			return &os.PathError{Op: "mknod", Path: name, Err: err}
		}
		if err := a.metaAt(hdr, parent, base, xattrs); err != nil {
			return err
		}
		if err := unix.Fchmodat(parent, base, mode, 0); err != nil {
			return &os.PathError{Op: "chmod", Path: name, Err: err}
		}
		return nil
	default:
		return fmt.Errorf("tar entry type %q is not supported: %w", hdr.Typeflag, errdefs.ErrInvalidArgument)
	}
}

// regular writes a file: data (sparse when the entry is), then owner,
// xattrs, mode and times, in that order, since a write or a chown clears
// setuid bits and file capabilities. A file that needs none of owner,
// xattrs and mode set apart (exactMeta) is created with its mode.
func (a *applier) regular(hdr *tar.Header, tr *tar.Reader, p *parentDir, base string, mode uint32, xattrs []xattr) error {
	sparse := isSparse(hdr)
	if sparse && hdr.Size > a.opts.limits.MaxSparseSize {
		return fmt.Errorf("sparse file of %d bytes, more than %d: %w", hdr.Size, a.opts.limits.MaxSparseSize, errdefs.ErrInvalidArgument)
	}
	exact := a.exactMeta(hdr, p, mode, xattrs)
	perm := uint32(0o600)
	if exact {
		perm = mode
	}
	if a.toWorker(hdr, joinName(p.canon, base)) {
		return a.giveSmall(hdr, tr, p, base, perm, mode, exact, xattrs)
	}
	fd := -1
	err := replacing(p.fd, base, func() (err error) {
		fd, err = unix.Openat(p.fd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
		return err
	})
	if err != nil {
		return &os.PathError{Op: "create", Path: hdr.Name, Err: err}
	}
	defer unix.Close(fd)
	if err := a.copyData(fd, tr, sparse, hdr.Size); err != nil {
		return &os.PathError{Op: "write", Path: hdr.Name, Err: err}
	}
	if !exact {
		if err := a.metaFd(hdr, fd, mode, xattrs); err != nil {
			return err
		}
	}
	return setTimes(fd, "", hdr.AccessTime, hdr.ModTime)
}

// copyData writes r, the entry's data, into the file fd with write(2)
// (no os.File: it would cost an fcntl per file).
func (a *applier) copyData(fd int, r io.Reader, sparse bool, size int64) error {
	var off int64
	var wb writeback.Ahead // a large file's data goes to disk while it is written
	for {
		n, rerr := r.Read(a.buf)
		if n > 0 {
			var err error
			if sparse {
				err = writeSparse(fd, a.buf[:n], off)
			} else {
				err = writeAll(fd, a.buf[:n])
			}
			if err != nil {
				return err
			}
			off += int64(n)
			wb.Wrote(fd, off)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("read tar: %w: %w", rerr, errdefs.ErrInvalidArgument)
		}
	}
	if sparse {
		return unix.Ftruncate(fd, size) // a hole at the end
	}
	return nil
}

// writeAll writes p to fd, however many calls it takes.
func writeAll(fd int, p []byte) error {
	for len(p) > 0 {
		n, err := unix.Write(fd, p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

var zeroBlock [sparseBlock]byte

// writeSparse writes p at off, leaving whole zero blocks as holes.
func writeSparse(fd int, p []byte, off int64) error {
	for len(p) > 0 {
		n := min(len(p), sparseBlock)
		if !bytes.Equal(p[:n], zeroBlock[:n]) {
			for done := 0; done < n; {
				m, err := unix.Pwrite(fd, p[done:n], off+int64(done))
				if err == unix.EINTR {
					continue
				}
				if err != nil {
					return err
				}
				done += m
			}
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

func isSparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// dir makes a folder, or keeps the one there, and sets its owner,
// xattrs and mode; its times are set once every entry is in (see apply).
// A new folder that needs none set apart (exactMeta) is made with its
// mode and not opened.
func (a *applier) dir(hdr *tar.Header, p *parentDir, name, base string, mode uint32, xattrs []xattr) error {
	delete(a.made, name) // described now
	a.dirs = append(a.dirs, dirTimes{name: name, atime: hdr.AccessTime, mtime: hdr.ModTime})
	exact := a.exactMeta(hdr, p, mode, xattrs)
	perm := uint32(0o700)
	if exact {
		perm = mode
	}
	err := unix.Mkdirat(p.fd, base, perm)
	if err == nil && exact {
		return nil
	}
	if err == unix.EEXIST {
		var st unix.Stat_t
		if serr := unix.Fstatat(p.fd, base, &st, unix.AT_SYMLINK_NOFOLLOW); serr == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			// Not a folder: replaced by one.
			if err := removeAllAt(p.fd, base); err != nil {
				return err
			}
			err = unix.Mkdirat(p.fd, base, 0o700)
		} else {
			err = nil // a folder is kept, with the entry's metadata
		}
	}
	if err != nil {
		return &os.PathError{Op: "mkdir", Path: name, Err: err}
	}
	fd, err := unix.Openat(p.fd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: name, Err: err}
	}
	defer unix.Close(fd)
	return a.metaFd(hdr, fd, mode, xattrs)
}

func (a *applier) hardlink(hdr *tar.Header, name string, parent int, base string) error {
	target, err := cleanName(hdr.Linkname, a.opts.limits.MaxNameLen)
	if err != nil {
		return fmt.Errorf("hardlink target: %w", err)
	}
	if target == "" {
		return fmt.Errorf("hardlink to the root: %w", errdefs.ErrInvalidArgument)
	}
	if target == name {
		var st unix.Stat_t
		if unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
			return nil // a link to itself: it is there already
		}
	}
	tdir, tbase := splitName(target)
	tparent, err := a.tree.openDir(tdir)
	if errors.Is(err, unix.ENOENT) && len(a.opts.parents) > 0 {
		tparent, err = a.tree.mkdirAll(tdir, a.madeParent)
	}
	if err != nil {
		return fmt.Errorf("hardlink target %q: %w", hdr.Linkname, err)
	}
	defer unix.Close(tparent)
	err = replacing(parent, base, func() error { return unix.Linkat(tparent, tbase, parent, base, 0) })
	if err == unix.ENOENT && len(a.opts.parents) > 0 {
		if err := a.copyUp(tparent, tbase, target); err != nil {
			return err
		}
		err = unix.Linkat(tparent, tbase, parent, base, 0)
	}
	if err != nil {
		return &os.PathError{Op: "link", Path: hdr.Name + " -> " + hdr.Linkname, Err: err}
	}
	return nil
}

// copyUp copies the regular file name from the topmost parent that has it
// into the folder dirfd as base, so that a hardlink to it can be made.
func (a *applier) copyUp(dirfd int, base, name string) error {
	for _, p := range a.opts.parents {
		src, err := securejoin.SecureJoin(p, name)
		if err != nil {
			return err
		}
		in, err := os.OpenFile(src, os.O_RDONLY|unix.O_NOFOLLOW, 0)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		defer in.Close()
		var st unix.Stat_t
		if err := unix.Fstat(int(in.Fd()), &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			return fmt.Errorf("hardlink target %q in a lower layer is not a file: %w", name, errdefs.ErrInvalidArgument)
		}
		fd, err := unix.Openat(dirfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return &os.PathError{Op: "create", Path: name, Err: err}
		}
		out := os.NewFile(uintptr(fd), name)
		defer out.Close()
		if _, err := io.CopyBuffer(out, in, a.buf); err != nil {
			return err
		}
		hdr := &tar.Header{Name: name, Uid: int(st.Uid), Gid: int(st.Gid)}
		if err := a.metaFd(hdr, fd, st.Mode&0o7777, nil); err != nil {
			return err
		}
		return setTimes(dirfd, base, time.Unix(st.Atim.Unix()), time.Unix(st.Mtim.Unix()))
	}
	return &os.PathError{Op: "link", Path: name, Err: unix.ENOENT}
}

// madeParent gives a folder that mkdirAll made the metadata of the same
// folder in the topmost parent that has it (Overlay WithParents), and
// records it for WithMadeParents.
func (a *applier) madeParent(dirfd int, name, rel string) error {
	if a.made != nil {
		a.made[rel] = struct{}{}
	}
	return inherit(a.opts.parents, a.owner, dirfd, name, rel)
}

// metaFd sets owner, xattrs and mode on an open file or folder.
func (a *applier) metaFd(hdr *tar.Header, fd int, mode uint32, xattrs []xattr) error {
	if a.owner {
		if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
			return &os.PathError{Op: "chown", Path: hdr.Name, Err: err}
		}
	}
	for _, x := range xattrs {
		if err := unix.Fsetxattr(fd, x.name, x.value, 0); err != nil && err != unix.ENOTSUP {
			return &os.PathError{Op: "setxattr " + x.name, Path: hdr.Name, Err: err}
		}
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		return &os.PathError{Op: "chmod", Path: hdr.Name, Err: err}
	}
	return nil
}

// metaAt sets owner, xattrs and times on base in parent without following
// it (a symlink or a device).
func (a *applier) metaAt(hdr *tar.Header, parent int, base string, xattrs []xattr) error {
	if a.owner {
		if err := unix.Fchownat(parent, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "chown", Path: hdr.Name, Err: err}
		}
	}
	if len(xattrs) > 0 {
		// The parent's descriptor names it; l*xattr does not follow base.
		p := "/proc/self/fd/" + strconv.Itoa(parent) + "/" + base
		for _, x := range xattrs {
			if err := unix.Lsetxattr(p, x.name, x.value, 0); err != nil && err != unix.ENOTSUP && err != unix.EPERM {
				return &os.PathError{Op: "setxattr " + x.name, Path: hdr.Name, Err: err}
			}
		}
	}
	return setTimes(parent, base, hdr.AccessTime, hdr.ModTime)
}

// setTimes sets base's times without following it, or, when base is "",
// those of the open file parent; a zero atime is mtime.
func setTimes(parent int, base string, atime, mtime time.Time) error {
	if atime.IsZero() {
		atime = mtime
	}
	ts := [2]unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	var err error
	if base == "" {
		// futimens(3): utimensat with a NULL path works on the
		// descriptor, which x/sys/unix has no wrapper for.
		_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(parent), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
		if errno != 0 {
			err = errno
		}
	} else {
		err = unix.UtimesNanoAt(parent, base, ts[:], unix.AT_SYMLINK_NOFOLLOW)
	}
	if err != nil {
		return &os.PathError{Op: "utimes", Path: base, Err: err}
	}
	return nil
}

// whiteout applies ".wh.NAME" or the opaque marker in the folder dir.
func (a *applier) whiteout(hdr *tar.Header, dir, base string) error {
	// What a whiteout removes may be on the path of the folder kept
	// open for the entries before it, or in flight.
	if err := a.drain(); err != nil {
		return err
	}
	a.forgetParent()
	if base == whiteoutOpaque {
		return a.opaque(dir)
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		return nil // aufs metadata
	}
	target := strings.TrimPrefix(base, whiteoutPrefix)
	if target == "" || target == "." || target == ".." {
		return fmt.Errorf("whiteout %q names no entry: %w", base, errdefs.ErrInvalidArgument)
	}
	if a.opts.convention == Plain {
		parent, err := a.tree.openDir(dir)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return nil // nothing there to delete
		}
		if err != nil {
			return err
		}
		defer unix.Close(parent)
		return removeAllAt(parent, target)
	}
	parent, err := a.tree.mkdirAll(dir, a.madeParent)
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	if err := removeAllAt(parent, target); err != nil {
		return err
	}
	if err := unix.Mknodat(parent, target, unix.S_IFCHR, 0); err != nil {
		return &os.PathError{Op: "mknod whiteout", Path: path.Join(dir, target), Err: err}
	}
	return setTimes(parent, target, hdr.AccessTime, hdr.ModTime)
}

// opaque applies the opaque marker to the folder dir.
func (a *applier) opaque(dir string) error {
	if a.opts.convention == Plain {
		fd, err := a.tree.openDir(dir)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return nil
		}
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return emptyDirAt(fd, ".", func(rel string) bool {
			_, ok := a.unpacked[path.Join(dir, rel)]
			return ok
		})
	}
	pfd, err := a.tree.mkdirAll(dir, a.madeParent)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	fd, err := unix.Openat(pfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.Fsetxattr(fd, overlayOpaqueXattr, []byte("y"), 0); err != nil {
		return &os.PathError{Op: "setxattr " + overlayOpaqueXattr, Path: dir, Err: err}
	}
	return nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
