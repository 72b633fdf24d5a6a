// Package unixsock listens on and dials file-based unix sockets whose paths
// may be longer than sockaddr_un allows (107 bytes): a long path is reached
// through /proc/self/fd/N/<base>, N an O_PATH descriptor of its folder.
//
// A socket made by Listen or ListenFile has mode 0600 from its first
// instant (set on the socket before bind creates the file; the process's
// umask, which is process wide, is never changed), so no other user can
// ever connect to it, and it is not removed when its
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

// Listen creates a unix socket at path with mode 0600 and listens on it.
// A stale socket file is replaced; the caller must know that nobody serves
// on it. See ListenFile.
func Listen(path string) (*net.UnixListener, error) {
	f, err := ListenFile(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	l, err := net.FileListener(f)
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// A listener made from a file never removes the socket on Close: the
	// socket may belong to another process than the one that created it
	// (the shim's serving copy, not the one that started it).
	return l.(*net.UnixListener), nil
}

// ListenFile creates a unix socket at path with mode 0600 and returns the
// listening socket as a file (close-on-exec), for a child process to
// inherit. A stale socket file is replaced; the caller must know that
// nobody serves on it.
//
// The mode is set on the socket before bind, which creates the file with
// it (less the umask), so no other user can connect at any instant; the
// process's umask is left alone: it is process wide, and a daemon creates
// files on other goroutines meanwhile.
func ListenFile(path string) (*os.File, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	f, err := bindPrivate(path)
	if err != nil {
		return nil, err
	}
	fd := int(f.Fd())
	// The kernel caps the backlog at net.core.somaxconn.
	if err := unix.Listen(fd, listenBacklog); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// The umask may have taken more away than 0600 leaves: widen to it.
	if err := os.Chmod(path, 0o600); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return f, nil
}

// bindPrivate creates a unix socket bound at path whose file has mode 0600
// or less from its first instant: the mode is set on the socket before
// bind, which creates the file with it less the umask.
func bindPrivate(path string) (*os.File, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: socket: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), "unix:"+path)
	if err := unix.Fchmod(fd, 0o600); err != nil {
		f.Close()
		return nil, fmt.Errorf("listen on %s: fchmod socket: %w", path, err)
	}
	err = withShortPath(path, func(p string) error {
		return unix.Bind(fd, &unix.SockaddrUnix{Name: p})
	})
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("listen on %s: bind: %w", path, err)
	}
	return f, nil
}

// listenBacklog is the backlog asked for; the kernel caps it at
// net.core.somaxconn, as Go's own listeners do.
const listenBacklog = 1<<16 - 1

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
