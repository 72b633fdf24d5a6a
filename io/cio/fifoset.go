package cio

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// FIFOSet is the FIFOs of one process and how to remove them.
type FIFOSet struct {
	Config

	closeOnce sync.Once
	close     func() error
	closeErr  error
}

// NewFIFOSet returns a set for the paths in config; Close calls close (which
// may be nil) once.
func NewFIFOSet(config Config, close func() error) *FIFOSet {
	return &FIFOSet{Config: config, close: close}
}

// Close removes the FIFOs as the set's maker arranged. Safe on nil and more
// than once.
func (f *FIFOSet) Close() error {
	if f == nil {
		return nil
	}
	f.closeOnce.Do(func() {
		if f.close != nil {
			f.closeErr = f.close()
		}
	})
	return f.closeErr
}

// NewFIFOSetInDir makes a folder of its own under root (created 0700 if
// needed) with a FIFO for stdin, stdout and, without a terminal, stderr.
// Close removes the folder.
func NewFIFOSetInDir(root, id string, terminal bool) (*FIFOSet, error) {
	return newFIFOSet(root, id, terminal, true, true, !terminal)
}

func newFIFOSet(root, id string, terminal, stdin, stdout, stderr bool) (*FIFOSet, error) {
	if !stdin && !stdout && !stderr {
		// No folder: the daemon would report no path, so after a crash of
		// this client nobody could find it to remove it.
		return NewFIFOSet(Config{Terminal: terminal}, nil), nil
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("fifo dir: %w", err)
	}
	dir, err := os.MkdirTemp(root, id+"-")
	if err != nil {
		return nil, fmt.Errorf("fifo dir for %q: %w", id, err)
	}
	set := NewFIFOSet(Config{Terminal: terminal}, func() error { return os.RemoveAll(dir) })
	for _, s := range []struct {
		want bool
		name string
		path *string
	}{
		{stdin, "stdin", &set.Stdin},
		{stdout, "stdout", &set.Stdout},
		{stderr && !terminal, "stderr", &set.Stderr},
	} {
		if !s.want {
			continue
		}
		p := filepath.Join(dir, s.name)
		if err := unix.Mkfifo(p, 0o600); err != nil {
			return nil, errors.Join(fmt.Errorf("mkfifo %s: %w", p, err), set.Close())
		}
		*s.path = p
	}
	return set, nil
}

// LoadFIFOs returns the set of an existing process from the paths the
// daemon reports. Its Close removes those paths that are FIFOs (never a
// file, nor a "file://" or "crilog://" output, nor anything through a
// symlinked folder) and then their folders once empty.
func LoadFIFOs(config Config) *FIFOSet {
	return NewFIFOSet(config, func() error {
		var errs []error
		dirs := map[string]bool{}
		for _, p := range fifoPaths(config) {
			dir := filepath.Dir(p)
			if err := withDir(unix.AT_FDCWD, dir, func(fd int) error { return unlinkFIFO(fd, filepath.Base(p)) }); err != nil {
				errs = append(errs, err)
			}
			dirs[dir] = true
		}
		for d := range dirs {
			// Fails, as it should, when the folder holds anything else.
			_ = unix.Rmdir(d)
		}
		return errors.Join(errs...)
	})
}

// RemoveCreatorFIFOs removes what a Creator with root as its FIFO dir made
// for process id, as far as config names it: each FIFO of config that lies
// in a folder directly under root named for id ("<id>-<digits>", see
// NewFIFOSetInDir), and then that folder once empty. Nothing else is
// touched: a path elsewhere (a folder the client chose), a file output,
// anything that is not a FIFO, a symlink on the way, a folder that holds
// more. What is gone already is no error.
//
// The daemon calls it when it deletes a task whose FIFOs lie in its own
// FIFO dir: a crash can cut the client's cleanup after the daemon
// finished the delete, and the client never learns the paths again.
func RemoveCreatorFIFOs(config Config, root, id string) error {
	root = filepath.Clean(root)
	var errs []error
	for _, p := range creatorFIFOs(config, root, id) {
		folder := filepath.Base(filepath.Dir(p))
		if err := withDir(unix.AT_FDCWD, root, func(rootfd int) error {
			return withDir(rootfd, folder, func(fd int) error { return unlinkFIFO(fd, filepath.Base(p)) })
		}); err != nil {
			errs = append(errs, err)
		}
	}
	for _, folder := range CreatorFolders(config, root, id) {
		err := withDir(unix.AT_FDCWD, root, func(rootfd int) error {
			return unix.Unlinkat(rootfd, folder, unix.AT_REMOVEDIR)
		})
		// Not empty: something else is in it, which is not ours to
		// remove; not a folder: a symlink, left alone.
		if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTEMPTY) &&
			!errors.Is(err, unix.EEXIST) && !errors.Is(err, unix.ENOTDIR) {
			errs = append(errs, fmt.Errorf("remove %s: %w", filepath.Join(root, folder), err))
		}
	}
	return errors.Join(errs...)
}

// CreatorFolders returns the names of the folders directly under root
// that a Creator made for process id and that FIFOs of config lie in:
// those RemoveCreatorFIFOs removes.
func CreatorFolders(config Config, root, id string) []string {
	var out []string
	for _, p := range creatorFIFOs(config, filepath.Clean(root), id) {
		if folder := filepath.Base(filepath.Dir(p)); !slices.Contains(out, folder) {
			out = append(out, folder)
		}
	}
	return out
}

// creatorFIFOs returns the FIFO paths of config that lie in a folder
// directly under root (clean) named for id.
func creatorFIFOs(config Config, root, id string) []string {
	var out []string
	for _, p := range fifoPaths(config) {
		dir := filepath.Dir(p)
		if filepath.Dir(dir) == root && creatorFolderOf(filepath.Base(dir), id) {
			out = append(out, p)
		}
	}
	return out
}

// CreatorFolderID returns the process id that a Creator made the folder
// name for: name is "<id>-<digits>", os.MkdirTemp's pattern and its
// random decimal digits (ids may hold dashes, the digits do not).
func CreatorFolderID(name string) (id string, ok bool) {
	i := strings.LastIndexByte(name, '-')
	if i <= 0 || i == len(name)-1 {
		return "", false
	}
	for _, c := range name[i+1:] {
		if c < '0' || c > '9' {
			return "", false
		}
	}
	return name[:i], true
}

// creatorFolderOf reports whether name is a folder that newFIFOSet made for
// id.
func creatorFolderOf(name, id string) bool {
	got, ok := CreatorFolderID(name)
	return ok && got == id
}

// fifoPaths returns the clean absolute FIFO paths of config.
func fifoPaths(config Config) []string {
	var out []string
	for _, p := range []string{config.Stdin, config.Stdout, config.Stderr} {
		if isFIFO(p) && filepath.IsAbs(p) && !slices.Contains(out, filepath.Clean(p)) {
			out = append(out, filepath.Clean(p))
		}
	}
	return out
}

// withDir runs fn on a descriptor of the folder name, relative to dirfd,
// opened without following a symlink. A folder that is gone, or a symlink
// in its place, is skipped without error: nothing is removed through it.
func withDir(dirfd int, name string, fn func(fd int) error) error {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	defer unix.Close(fd)
	return fn(fd)
}

// unlinkFIFO removes name in the folder dirfd when it is a FIFO; anything
// else, or nothing, is left as it is.
func unlinkFIFO(dirfd int, name string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("stat %s: %w", name, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return nil
	}
	if err := unix.Unlinkat(dirfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove FIFO %s: %w", name, err)
	}
	return nil
}
