package unixsock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestLongPath listens on and dials a socket whose path does not fit in
// sockaddr_un, and checks the socket's mode and that it outlives its
// listener.
func TestLongPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "x.sock")
	if len(path) < sunPathMax {
		t.Fatalf("path %d bytes, want one longer than sockaddr_un", len(path))
	}
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := <-accepted; err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	l.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("socket removed with its listener: %v", err)
	}
}

// TestDialFailsAtOnce: a dial never waits, whatever its context allows:
// a missing socket and one nobody accepts on fail with the socket's path
// named, and a context already done fails before connecting.
func TestDialFailsAtOnce(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	missing := filepath.Join(dir, "missing.sock")
	if _, err := Dial(ctx, missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("dial of a missing socket: %v, want an error naming it", err)
	}
	path := filepath.Join(dir, "x.sock")
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	l.Close() // the file stays; nobody listens
	if _, err := Dial(ctx, path); err == nil {
		t.Fatal("dial of a socket nobody listens on succeeded")
	}
	l, err = Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done, stop := context.WithCancel(context.Background())
	stop()
	if _, err := Dial(done, path); !errors.Is(err, context.Canceled) {
		t.Fatalf("dial with a cancelled context: %v, want context.Canceled", err)
	}
}

// TestBindIsPrivateUnderAnyUmask: the socket file is 0600 as bind makes it,
// before any chmod, even under umask 0, and the umask is not changed (it
// is process wide: a daemon that lowered it for a moment would create
// other goroutines' files with the wrong mode, and archive reads it).
func TestBindIsPrivateUnderAnyUmask(t *testing.T) {
	old := unix.Umask(0)
	defer unix.Umask(old)
	path := filepath.Join(t.TempDir(), "x.sock")
	f, err := bindPrivate(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v as bound under umask 0, want a socket with 0600", fi.Mode())
	}
	if got := unix.Umask(0); got != 0 {
		t.Fatalf("umask %#o after bind, want the 0 it was", got)
	}
	f.Close()

	// ListenFile: a listening socket, close-on-exec, for a child.
	lf, err := ListenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	flags, err := unix.FcntlInt(lf.Fd(), unix.F_GETFD, 0)
	if err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Fatalf("listening socket flags %#x, %v: want close-on-exec", flags, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := Dial(ctx, path)
	if err != nil {
		t.Fatalf("dial a ListenFile socket: %v", err)
	}
	c.Close()
}
