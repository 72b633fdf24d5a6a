// Package unixsock listens on and dials file-based unix sockets whose paths
// may be longer than sockaddr_un allows (107 bytes): a long path is reached
// through /proc/self/fd/N/<base>, N an O_PATH descriptor of its folder.
//
// A socket made by Listen has mode 0600 from its first instant (it is
// created under a umask that leaves it inaccessible, then widened), so no
// other user can ever connect to it, and it is not removed when its
// listener closes: the file belongs to whoever serves on it, which may be
// another process than the one that created it (berth-shim's re-exec).
package unixsock

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// sunPathMax is the size of sockaddr_un.sun_path, including the NUL byte.
const sunPathMax = 108

// withShortPath calls fn with a path naming the same file as path that fits
// in sockaddr_un: path itself when it is short enough, otherwise
// /proc/self/fd/N/<base> through an O_PATH descriptor of its folder.
func withShortPath(path string, fn func(string) error) error {
	if len(path) < sunPathMax {
		return fn(path)
	}
	dirfd, err := unix.Open(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: filepath.Dir(path), Err: err}
	}
	defer unix.Close(dirfd)
	return fn(fmt.Sprintf("/proc/self/fd/%d/%s", dirfd, filepath.Base(path)))
}

// Listen creates a unix socket at path with mode 0600. A stale socket
// file is replaced; the caller must know that nobody serves on it.
func Listen(path string) (*net.UnixListener, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var l *net.UnixListener
	err := withShortPath(path, func(p string) error {
		// umask is process wide; create the socket inaccessible and widen it
		// to 0600 after, so that no other user can ever connect.
		old := unix.Umask(0o177)
		defer unix.Umask(old)
		var err error
		l, err = net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// The listener must not remove the file on Close: the socket may belong
	// to another process than the one that created it (the shim's
	// long-lived copy, not the start process).
	l.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// Dial connects to the unix socket at path. A connect to a unix socket
// never waits: a missing socket, a refused connection or a full backlog
// fail at once, so ctx is only checked before. It uses net.DialUnix, not
// a net.Dialer: DialContext links Go's DNS resolver into every binary that
// dials, berth-shim among them (0.25 MB of its 5.7; issue 15).
func Dial(ctx context.Context, path string) (net.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("dial %s: %w", path, err)
	}
	var conn *net.UnixConn
	err := withShortPath(path, func(p string) error {
		var err error
		conn, err = net.DialUnix("unix", nil, &net.UnixAddr{Name: p, Net: "unix"})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", path, err)
	}
	return conn, nil
}
