package netns

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// threadNetNS names the network namespace of the calling thread (not of the
// process: the thread-group leader may be in another one).
const threadNetNS = "/proc/thread-self/ns/net"

// NetNS is a network namespace pinned at a path.
type NetNS struct {
	path string
}

// New makes a network namespace and pins it at dir/<random name>. dir is
// made 0700 when it is absent.
func New(dir string) (*NetNS, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("netns folder %q: not an absolute path", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("netns folder: %w", err)
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("netns name: %w", err)
	}
	path := filepath.Join(dir, "netns-"+hex.EncodeToString(id[:]))
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o444)
	if err != nil {
		return nil, fmt.Errorf("netns pin: %w", err)
	}
	f.Close()

	err = onSwitchedThread(
		func() error { return unix.Unshare(unix.CLONE_NEWNET) },
		func() error { return unix.Mount(threadNetNS, path, "", unix.MS_BIND, "") })
	ns := &NetNS{path: path}
	if err != nil {
		// The pin may be mounted when only the way back failed.
		return nil, errors.Join(fmt.Errorf("new netns at %s: %w", path, err), ns.Remove())
	}
	return ns, nil
}

// Load returns the namespace pinned at path, e.g. one recorded before a
// restart. It does not check the pin; Closed does.
func Load(path string) *NetNS {
	return &NetNS{path: filepath.Clean(path)}
}

// Path is where the namespace is pinned, for CNI plugins and runc's spec.
func (n *NetNS) Path() string { return n.path }

// Remove unmounts the pin and removes its file. A pin already gone is not
// an error.
func (n *NetNS) Remove() error {
	// MNT_DETACH: a plugin or a container setting up may still hold the
	// namespace open; the namespace goes when the last of them lets go.
	// UMOUNT_NOFOLLOW: a symlink put at the path is not followed.
	err := unix.Unmount(n.path, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount netns %s: %w", n.path, err)
	}
	if err := removeIfExists(n.path); err != nil {
		return fmt.Errorf("remove netns pin: %w", err)
	}
	return nil
}

// Closed reports whether the namespace is gone: the path is absent or holds
// no namespace any more (the pin was unmounted).
func (n *NetNS) Closed() (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(n.path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return true, nil
		}
		return false, fmt.Errorf("netns %s: %w", n.path, err)
	}
	return st.Type != unix.NSFS_MAGIC, nil
}

// Do runs fn on a locked OS thread inside the namespace and returns its
// error. See the package doc for what runs where.
func (n *NetNS) Do(fn func() error) error {
	target, err := os.OpenFile(n.path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("netns %s: %w", n.path, err)
	}
	defer target.Close()

	err = onSwitchedThread(
		func() error { return unix.Setns(int(target.Fd()), unix.CLONE_NEWNET) },
		fn)
	if err != nil {
		return fmt.Errorf("netns %s: %w", n.path, err)
	}
	return nil
}

// onSwitchedThread runs fn on a locked OS thread whose network namespace
// enter switched, then switches the thread back to the namespace it had and
// unlocks it. A thread that cannot go back stays locked, so the runtime ends
// it with its goroutine.
func onSwitchedThread(enter, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		origin, err := os.Open(threadNetNS)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("current network namespace: %w", err)
			return
		}
		defer origin.Close()
		if err := enter(); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("switch network namespace: %w", err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(origin.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("return to the original network namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
