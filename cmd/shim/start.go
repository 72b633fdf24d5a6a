package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/internal/shimlaunch"
	"github.com/berthrt/berth/shimapi"
)

// startTimeout bounds how long start waits for the new shim to serve.
const startTimeout = 10 * time.Second

// start starts the serving shim for the bundle (package shimlaunch: the
// socket, the detached re-exec with the socket inherited, the wait until
// it serves), unless one serves it already, and prints the address.
func start(ctx context.Context, o *options) error {
	path := shimapi.SocketPath(o.bundle)
	// One start per bundle at a time: a second one waits, then finds the
	// first one's shim alive.
	unlock, err := lockBundle(o.bundle)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(o.bundle, shimapi.DeletedName)); err == nil {
		return fmt.Errorf("bundle %s: berth-shim delete cleaned it up; start no shim for it", o.bundle)
	}
	if alive(ctx, o.bundle) {
		fmt.Println(path)
		return nil
	}
	args := []string{"--namespace", o.namespace, "--id", o.id, "--bundle", o.bundle,
		"--runtime", o.runtime, "--runtime-root", o.runtimeRoot}
	cfg := shimlaunch.Config{Binary: "/proc/self/exe", Folder: o.bundle, Timeout: startTimeout}
	if o.spare {
		args = []string{"--spare", "--bundle", o.bundle}
		// A pidfd of our caller, the daemon, which waits for us: a spare
		// that is not bound yet exits with it. The caller names itself
		// (--parent-pid): a caller that died before we got here has left
		// us to init or a subreaper, whose pidfd would keep the spare
		// forever. Our parent after the open is the process the pidfd
		// names, since a pid cannot be reused while it is our parent.
		ppid := o.parentPid
		if ppid == 0 {
			ppid = os.Getppid()
		}
		if os.Getppid() != ppid {
			return fmt.Errorf("the process that asked for a spare (pid %d) exited", ppid)
		}
		pidfd, err := unix.PidfdOpen(ppid, 0)
		if err != nil {
			return fmt.Errorf("pidfd of the daemon: %w", err)
		}
		cfg.Daemon = os.NewFile(uintptr(pidfd), "daemon-pidfd")
		defer cfg.Daemon.Close()
		if os.Getppid() != ppid {
			return fmt.Errorf("the process that asked for a spare (pid %d) exited", ppid)
		}
	}
	if o.debug {
		args = append(args, "--debug")
	}
	cfg.Args = args
	p, err := shimlaunch.Start(ctx, cfg)
	if err != nil {
		return err
	}
	// The shim is released, not waited for: once this process exits it is
	// reparented and lives on its own.
	p.Release()
	fmt.Println(path)
	return nil
}

// alive reports whether a shim serves the bundle's socket now.
func alive(ctx context.Context, bundle string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c, task, err := shimapi.Connect(ctx, bundle)
	if err != nil {
		return false
	}
	defer c.Close()
	_, err = task.Connect(ctx, &shimapi.ConnectRequest{})
	return err == nil
}

// lockBundle takes an exclusive flock on the bundle folder.
func lockBundle(bundle string) (func(), error) {
	f, err := os.Open(bundle)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock bundle %s: %w", bundle, err)
	}
	// While this waited, the folder may have been removed and made again
	// for a new task: the lock is then on a folder nobody uses.
	var locked, now syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &locked); err != nil {
		f.Close()
		return nil, err
	}
	if err := syscall.Stat(bundle, &now); err != nil || now.Dev != locked.Dev || now.Ino != locked.Ino {
		f.Close()
		return nil, fmt.Errorf("lock bundle %s: the folder was removed or replaced while waiting for its lock", bundle)
	}
	return func() { f.Close() }, nil
}
