package archive

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/errdefs"
)

// maxSymlinkDepth bounds the dangling symlinks mkdirAll follows, as the
// kernel's MAXSYMLINKS bounds a lookup.
const maxSymlinkDepth = 40

// cleanName turns a tar name into a path relative to root ("" is root
// itself). A leading "/" is dropped; a ".." above root, a NUL or a name
// longer than maxLen is refused.
func cleanName(name string, maxLen int) (string, error) {
	if len(name) > maxLen {
		return "", fmt.Errorf("name of %d bytes, more than %d: %w", len(name), maxLen, errdefs.ErrInvalidArgument)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("name %q contains NUL: %w", name, errdefs.ErrInvalidArgument)
	}
	rel := strings.TrimLeft(name, "/")
	if rel == "" {
		return "", nil
	}
	c := path.Clean(rel)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("name %q leaves the root: %w", name, errdefs.ErrInvalidArgument)
	}
	if c == "." {
		return "", nil
	}
	return c, nil
}

// splitName splits a cleaned name into its parent ("" for root) and base.
func splitName(name string) (dir, base string) {
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return "", name
	}
	return name[:i], name[i+1:]
}

// tree is a root folder opened once; every lookup below it is made by
// the kernel inside it.
type tree struct {
	fd   int    // the root folder, O_PATH
	path string // as given, for messages and /proc paths
}

func openTree(root string) (*tree, error) {
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: root, Err: err}
	}
	return &tree{fd: fd, path: root}, nil
}

func (t *tree) close() error { return unix.Close(t.fd) }

// openIn opens rel, resolved with root as "/": symlinks on the way, ".."
// and absolute targets stay inside. rel "" opens root itself.
func (t *tree) openIn(rel string, flags uint64) (int, error) {
	if rel == "" {
		rel = "."
	}
	for {
		fd, err := unix.Openat2(t.fd, rel, &unix.OpenHow{
			Flags:   flags | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
		})
		switch {
		case err == unix.EINTR || err == unix.EAGAIN: // a rename raced the lookup
			continue
		case err == unix.ENOSYS:
			return -1, fmt.Errorf("openat2: %w (needs Linux 5.6 or later)", errdefs.ErrNotImplemented)
		case err != nil:
			return -1, &os.PathError{Op: "openat2", Path: rel, Err: err}
		}
		return fd, nil
	}
}

// openDir opens the folder rel as an O_PATH descriptor.
func (t *tree) openDir(rel string) (int, error) {
	return t.openIn(rel, unix.O_PATH|unix.O_DIRECTORY)
}

// relPath is where the folder fd really is, relative to root: the
// kernel's name for it less root's.
func (t *tree) relPath(fd int) (string, error) {
	rootReal, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(t.fd))
	if err != nil {
		return "", err
	}
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "", err
	}
	if p == rootReal {
		return "", nil
	}
	if rootReal == "/" {
		rootReal = ""
	}
	rel, ok := strings.CutPrefix(p, rootReal+"/")
	if !ok {
		return "", fmt.Errorf("folder %q is not under root %q: %w", p, rootReal, errdefs.ErrInternal)
	}
	return rel, nil
}

// mkdirAll opens the folder rel inside root, making what is missing with
// mkdir (0755, or what made takes from a lower folder). A missing
// component that is a dangling symlink has its target made instead,
// inside root.
func (t *tree) mkdirAll(rel string, made func(dirfd int, name, rel string) error) (int, error) {
	return t.mkdirAllDepth(rel, made, 0)
}

func (t *tree) mkdirAllDepth(rel string, made func(dirfd int, name, rel string) error, depth int) (int, error) {
	fd, err := t.openDir(rel)
	if err == nil || !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	if depth > maxSymlinkDepth {
		return -1, &os.PathError{Op: "mkdir", Path: rel, Err: unix.ELOOP}
	}
	comps := strings.Split(rel, "/")
	cur, err := t.openDir("")
	if err != nil {
		return -1, err
	}
	for i, c := range comps {
		prefix := strings.Join(comps[:i+1], "/")
		next, err := t.openDir(prefix)
		if errors.Is(err, unix.ENOENT) {
			next, err = t.mkdirOne(cur, c, made, depth)
			if err == nil {
				unix.Close(next)
				next, err = t.openDir(prefix)
			}
		}
		unix.Close(cur)
		if err != nil {
			return -1, err
		}
		cur = next
	}
	return cur, nil
}

// mkdirOne makes the folder name in the folder dirfd, or, when name is a
// dangling symlink, the folder it points to (resolved inside root).
func (t *tree) mkdirOne(dirfd int, name string, made func(dirfd int, name, rel string) error, depth int) (int, error) {
	dirRel, err := t.relPath(dirfd)
	if err != nil {
		return -1, err
	}
	err = unix.Mkdirat(dirfd, name, 0o755)
	if err == nil {
		if made != nil {
			if err := made(dirfd, name, path.Join(dirRel, name)); err != nil {
				return -1, err
			}
		}
		return t.openDir(path.Join(dirRel, name))
	}
	if err != unix.EEXIST {
		return -1, &os.PathError{Op: "mkdirat", Path: path.Join(dirRel, name), Err: err}
	}
	target, err := readlinkat(dirfd, name)
	if err != nil { // made by someone else meanwhile, or not a symlink
		return t.openDir(path.Join(dirRel, name))
	}
	if !path.IsAbs(target) {
		target = path.Join("/", dirRel, target)
	}
	return t.mkdirAllDepth(strings.TrimPrefix(path.Clean("/"+target), "/"), made, depth+1)
}

func readlinkat(dirfd int, name string) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(dirfd, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// removeAllAt removes name in the folder dirfd and, if it is a folder,
// everything in it, without following symlinks. A missing name is no
// error.
func removeAllAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR && err != unix.EPERM {
		return &os.PathError{Op: "unlinkat", Path: name, Err: err}
	}
	if err := emptyDirAt(dirfd, name, nil); err != nil {
		return err
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && err != unix.ENOENT {
		return &os.PathError{Op: "rmdir", Path: name, Err: err}
	}
	return nil
}

// emptyDirAt removes everything in the folder name under dirfd for which
// keep (when not nil) is false; a kept folder is recursed into with its
// path. keep gets paths relative to the folder name.
func emptyDirAt(dirfd int, name string, keep func(rel string) bool) error {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: name, Err: err}
	}
	dir := os.NewFile(uintptr(fd), name)
	defer dir.Close()
	return emptyDir(dir, "", keep)
}

func emptyDir(dir *os.File, prefix string, keep func(rel string) bool) error {
	fd := int(dir.Fd())
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return err
	}
	for _, n := range names {
		rel := path.Join(prefix, n)
		if keep == nil || !keep(rel) {
			if err := removeAllAt(fd, n); err != nil {
				return err
			}
			continue
		}
		sub, err := unix.Openat(fd, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == unix.ENOTDIR || err == unix.ELOOP {
			continue // a kept file or symlink
		}
		if err != nil {
			return &os.PathError{Op: "open", Path: rel, Err: err}
		}
		f := os.NewFile(uintptr(sub), rel)
		err = emptyDir(f, rel, keep)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}
