package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/internal/spantrace"
	"github.com/berthrt/berth/internal/unixsock"
	"github.com/berthrt/berth/shimapi"
)

// startTimeout bounds how long start waits for the new shim to serve.
const startTimeout = 10 * time.Second

// readyMessage is what the serving copy writes on the readiness pipe.
const readyMessage = "ready"

// start creates the socket, re-executes the shim detached with the socket
// inherited, waits until it serves, and prints the address.
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
	l, err := unixsock.Listen(path)
	if err != nil {
		return err
	}
	lf, err := l.File() // a duplicate descriptor, inherited by the child
	l.Close()
	if err != nil {
		os.Remove(path)
		return err
	}
	defer lf.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		os.Remove(path)
		return err
	}
	defer readyR.Close()

	args := []string{"berth-shim", "serve",
		"--namespace", o.namespace, "--id", o.id, "--bundle", o.bundle,
		"--runtime", o.runtime, "--runtime-root", o.runtimeRoot}
	extra := []*os.File{lf, readyW} // fd 3: listener, fd 4: readiness
	if o.spare {
		args = []string{"berth-shim", "serve", "--spare", "--bundle", o.bundle}
		// fd 5: a pidfd of our caller, the daemon, which waits for us: a
		// spare that is not bound yet exits with it. The caller names
		// itself (--parent-pid): a caller that died before we got here
		// has left us to init or a subreaper, whose pidfd would keep the
		// spare forever. Our parent after the open is the process the
		// pidfd names, since a pid cannot be reused while it is our
		// parent.
		ppid := o.parentPid
		if ppid == 0 {
			ppid = os.Getppid()
		}
		if os.Getppid() != ppid {
			readyW.Close()
			os.Remove(path)
			return fmt.Errorf("the process that asked for a spare (pid %d) exited", ppid)
		}
		pidfd, err := unix.PidfdOpen(ppid, 0)
		if err != nil {
			readyW.Close()
			os.Remove(path)
			return fmt.Errorf("pidfd of the daemon: %w", err)
		}
		daemonPidfd := os.NewFile(uintptr(pidfd), "daemon-pidfd")
		defer daemonPidfd.Close()
		if os.Getppid() != ppid {
			readyW.Close()
			os.Remove(path)
			return fmt.Errorf("the process that asked for a spare (pid %d) exited", ppid)
		}
		extra = append(extra, daemonPidfd)
	}
	if o.debug {
		args = append(args, "--debug")
	}
	cmd := &exec.Cmd{
		Path: "/proc/self/exe",
		Args: args,
		Dir:  o.bundle,
		Env:  serveEnv(),
		// Stdin, Stdout, Stderr nil: /dev/null, away from the caller.
		ExtraFiles:  extra,
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	span := spantrace.Start("fork serve")
	if err := cmd.Start(); err != nil {
		readyW.Close()
		os.Remove(path)
		return fmt.Errorf("re-exec shim: %w", err)
	}
	span.End()
	span = spantrace.Start("wait ready")
	defer span.End()
	readyW.Close()
	// The child is released, not waited for: once this process exits it is
	// reparented and lives on its own.
	pid := cmd.Process.Pid
	cmd.Process.Release()

	got := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(readyR).ReadString('\n')
		got <- strings.TrimSpace(line)
	}()
	select {
	case msg := <-got:
		if msg == readyMessage {
			fmt.Println(path)
			return nil
		}
		os.Remove(path)
		return fmt.Errorf("shim exited before serving%s", logTail(o.bundle))
	case <-time.After(startTimeout):
		syscall.Kill(pid, syscall.SIGKILL)
		os.Remove(path)
		return fmt.Errorf("shim did not serve within %v%s", startTimeout, logTail(o.bundle))
	}
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

// logTail returns the end of the shim log, to explain a failed start.
func logTail(bundle string) string {
	data, err := os.ReadFile(bundle + "/" + shimapi.LogFileName)
	if err != nil || len(data) == 0 {
		return ""
	}
	if len(data) > 2048 {
		data = data[len(data)-2048:]
	}
	return ": shim log: " + strings.TrimSpace(string(data))
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
