package shimapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"
)

// Version is the shim API version this package implements.
const Version = "v1"

// Files in the bundle folder, owned by the shim.
const (
	SocketName   = "shim.sock"
	PidFileName  = "shim.pid"
	LogFileName  = "shim.log"
	ExitFileName = "exit.json"
	// DeletedName marks a bundle that `berth-shim delete` cleaned up: a
	// later `start` for it fails instead of starting a shim for a bundle
	// that is going away.
	DeletedName = "shim-deleted"
)

// sunPathMax is the size of sockaddr_un.sun_path, including the NUL byte.
const sunPathMax = 108

// SocketPath returns the shim socket's path for a bundle.
func SocketPath(bundle string) string { return filepath.Join(bundle, SocketName) }

// ExitStatus is the persisted exit of a container's init process.
type ExitStatus struct {
	Pid      uint32    `json:"pid"`
	Status   uint32    `json:"exit_status"`
	ExitedAt time.Time `json:"exited_at"`
}

// WriteExitFile persists st in the bundle atomically: a reader sees the
// whole file or none.
func WriteExitFile(bundle string, st ExitStatus) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(bundle, ExitFileName), data, 0o600)
}

// ReadExitFile returns the persisted exit status of a bundle, or an error
// wrapping fs.ErrNotExist when none was written.
func ReadExitFile(bundle string) (ExitStatus, error) {
	var st ExitStatus
	data, err := os.ReadFile(filepath.Join(bundle, ExitFileName))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("exit file %s: %w", filepath.Join(bundle, ExitFileName), err)
	}
	return st, nil
}

// ReadPidFile returns the pid recorded in a bundle's shim.pid.
func ReadPidFile(bundle string) (int, error) {
	data, err := os.ReadFile(filepath.Join(bundle, PidFileName))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(string(data))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: bad content %q", filepath.Join(bundle, PidFileName), data)
	}
	return pid, nil
}

// WriteFileAtomic writes data to a temporary file beside path, syncs it and
// renames it over path, then syncs the folder.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Chmod(perm); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// withShortPath calls fn with a path naming the same file as path that fits
// in sockaddr_un: path itself when it is short enough, otherwise
// /proc/self/fd/N/<base> through an O_PATH descriptor of its folder. Unix
// socket paths are limited to 107 bytes; bundle paths are not.
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

// Listen creates the shim socket at path with mode 0600. A stale socket
// file is replaced; the caller must know that no shim serves on it.
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
	// The listener must not remove the file on Close: the socket belongs to
	// the long-lived copy, not to the start process that created it.
	l.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// Dial connects to a shim socket. A missing socket or a refused connection
// fails at once (the shim is gone); ctx bounds the rest.
func Dial(ctx context.Context, path string) (net.Conn, error) {
	var conn net.Conn
	err := withShortPath(path, func(p string) error {
		var d net.Dialer
		var err error
		conn, err = d.DialContext(ctx, "unix", p)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial shim %s: %w", path, err)
	}
	return conn, nil
}

// Connect dials the shim of a bundle and returns a ttrpc client for it,
// whose errors carry berth's error classes. The caller closes the returned
// *ttrpc.Client.
func Connect(ctx context.Context, bundle string, opts ...ttrpc.ClientOpts) (*ttrpc.Client, TaskClient, error) {
	conn, err := Dial(ctx, SocketPath(bundle))
	if err != nil {
		return nil, nil, err
	}
	opts = append([]ttrpc.ClientOpts{ttrpc.WithUnaryClientInterceptor(ClientErrors)}, opts...)
	c := ttrpc.NewClient(conn, opts...)
	return c, NewTaskClient(c), nil
}
