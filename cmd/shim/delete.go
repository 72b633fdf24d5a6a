package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	runc "github.com/containerd/go-runc"
	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/internal/atomicfile"
	"github.com/berthrt/berth/internal/proc"
	"github.com/berthrt/berth/mount"
	"github.com/berthrt/berth/shimapi"
)

// del cleans up after a shim that is gone. It is idempotent: every step
// tolerates what an earlier run already did.
func del(ctx context.Context, o *options) error {
	// A `start` for this bundle that outlived a killed daemon holds the
	// bundle's lock until its shim serves (and its pid file exists) or it
	// gave up: waiting for it here means the shim it started is killed
	// below instead of serving a bundle that is about to go.
	// A start that comes after (it was spawned before the daemon died,
	// but locks later) finds the deleted mark and starts nothing.
	// The cleanup goes on whatever fails here: it is the last resort.
	var errs []error
	if unlock, err := lockBundle(o.bundle); err == nil {
		defer unlock()
		if err := atomicfile.WriteVolatile(filepath.Join(o.bundle, shimapi.DeletedName), nil, 0o600); err != nil {
			errs = append(errs, fmt.Errorf("mark the bundle deleted: %w", err))
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	if err := killShim(o.bundle); err != nil {
		errs = append(errs, err)
	}
	// A bundle renamed since (set aside by a task delete) is named in
	// the environment of its shim's runtime calls by its path before.
	for _, bundle := range slices.Compact([]string{o.bundle, cmp.Or(o.servedAs, o.bundle)}) {
		if err := killRuntimeLeft(bundle); err != nil {
			errs = append(errs, err)
		}
	}
	r := &runc.Runc{Command: o.runtime, Root: o.runtimeRoot}
	if _, err := r.State(ctx, o.id); err == nil {
		// Every process, also those outside a pid namespace, then the
		// container itself.
		r.Kill(ctx, o.id, int(syscall.SIGKILL), &runc.KillOpts{All: true})
		if err := r.Delete(ctx, o.id, &runc.DeleteOpts{Force: true}); err != nil {
			// A delete that a dead shim left running may have got there
			// first: a container the runtime no longer knows is deleted.
			if _, serr := r.State(ctx, o.id); serr == nil {
				errs = append(errs, fmt.Errorf("runtime delete: %w", err))
			}
		}
	}
	if err := mount.UnmountAll(filepath.Join(o.bundle, "rootfs"), 0); err != nil {
		errs = append(errs, fmt.Errorf("unmount rootfs: %w", err))
	}
	for _, name := range []string{shimapi.SocketName, shimapi.PidFileName, "init.pid"} {
		if err := os.Remove(filepath.Join(o.bundle, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	st, err := shimapi.ReadExitFile(o.bundle)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(st)
}

// killShim kills a shim process still recorded in the bundle, if the pid
// still belongs to a berth-shim serving this bundle (pids are reused),
// together with every process it started, and waits until they are gone:
// a SIGKILL is delivered, not done, and a shim still dying could write
// into the bundle that delete is about to remove, or be found serving it
// after delete returned. The pidfd is taken before the command line is
// read, so the process checked is the one killed.
//
// The shim's children die too: a runtime call under way, such as a
// `runc create` that the daemon's death cut short, would otherwise go on,
// write its pid file and log into the bundle while it is removed
// ("directory not empty") and leave a container no task owns.
func killShim(bundle string) error {
	pid, err := shimapi.ReadPidFile(bundle)
	if err != nil {
		return nil
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil // gone already
	}
	defer unix.Close(pidfd)
	if !shimapi.ServesBundle(pid, bundle) {
		return nil
	}
	// Stopped first: a stopped shim starts no more processes, so the
	// tree read below is all of it.
	if err := unix.PidfdSendSignal(pidfd, unix.SIGSTOP, nil, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		return fmt.Errorf("stop shim %d: %w", pid, err)
	}
	waitState(pid, killedExitTimeout, 'T', 't')
	descendants := stopDescendants(pid)
	if err := unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kill shim %d: %w", pid, err)
	}
	for _, p := range descendants {
		unix.Kill(p, unix.SIGKILL)
	}
	var errs []error
	for _, p := range descendants {
		if !waitState(p, killedExitTimeout) {
			errs = append(errs, fmt.Errorf("process %d of shim %d still alive %v after SIGKILL", p, pid, killedExitTimeout))
		}
	}
	// The pidfd becomes readable when the process has exited.
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	deadline := time.Now().Add(killedExitTimeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return errors.Join(append(errs, fmt.Errorf("shim %d still alive %v after SIGKILL", pid, killedExitTimeout))...)
		}
		n, err := unix.Poll(fds, int(left.Milliseconds())+1)
		if err == nil && n > 0 {
			return errors.Join(errs...)
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			return errors.Join(append(errs, fmt.Errorf("wait for shim %d: %w", pid, err))...)
		}
	}
}

// killRuntimeLeft kills what the bundle's runtime calls left running
// outside the shim's tree: a shim that died (killed, crashed) before it
// ended its runtime calls left them reparented away. They carry the
// bundle in runtimeBundleEnv; the container's processes do not. Each is
// stopped first, and the search repeated until it finds no new one, so
// that none forks a successor after the search.
func killRuntimeLeft(bundle string) error {
	entry := runtimeBundleEnv + "=" + bundle
	self := os.Getpid()
	var stopped []int
	for range maxLeftSearches {
		found := false
		for _, pid := range proc.WithEnv(entry) {
			if pid == self || slices.Contains(stopped, pid) || unix.Kill(pid, unix.SIGSTOP) != nil {
				continue
			}
			found = true
			stopped = append(stopped, pid)
			waitState(pid, killedExitTimeout, 'T', 't')
		}
		if !found {
			break
		}
	}
	var errs []error
	for _, pid := range stopped {
		unix.Kill(pid, unix.SIGKILL)
	}
	for _, pid := range stopped {
		if !waitState(pid, killedExitTimeout) {
			errs = append(errs, fmt.Errorf("runtime process %d still alive %v after SIGKILL", pid, killedExitTimeout))
		}
	}
	return errors.Join(errs...)
}

// maxLeftSearches bounds killRuntimeLeft's searches: each stops every
// process it finds, so a process that keeps forking is caught within a
// few.
const maxLeftSearches = 8

// stopDescendants SIGSTOPs every descendant of the stopped process root,
// each before its own children are read (a stopped process forks nothing
// more, so none escapes), and returns their pids.
func stopDescendants(root int) []int {
	var tree []int
	queue := proc.Children(root)
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if pid == root || slices.Contains(tree, pid) || unix.Kill(pid, unix.SIGSTOP) != nil {
			continue
		}
		tree = append(tree, pid)
		waitState(pid, killedExitTimeout, 'T', 't')
		queue = append(queue, proc.Children(pid)...)
	}
	return tree
}

// waitState waits up to limit until pid is in one of states (its letter
// in /proc/PID/stat) or has exited (a zombie, or no such process), and
// reports whether it got there.
func waitState(pid int, limit time.Duration, states ...byte) bool {
	deadline := time.Now().Add(limit)
	for {
		st, err := proc.State(pid)
		if err != nil || st == 'Z' || st == 'X' || slices.Contains(states, st) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
}

// killedExitTimeout bounds the wait for a killed process (a shim, a
// runtime call) to exit. A SIGKILLed process exits as soon as it is
// scheduled; only a task stuck in the kernel (D state) takes longer.
const killedExitTimeout = 10 * time.Second
