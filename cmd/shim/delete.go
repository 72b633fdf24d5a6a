package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	runc "github.com/containerd/go-runc"

	"github.com/berthrt/berth/internal/atomicfile"
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
		if err := atomicfile.WriteFile(filepath.Join(o.bundle, shimapi.DeletedName), nil, 0o600); err != nil {
			errs = append(errs, fmt.Errorf("mark the bundle deleted: %w", err))
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	killShim(o.bundle)
	r := &runc.Runc{Command: o.runtime, Root: o.runtimeRoot}
	if _, err := r.State(ctx, o.id); err == nil {
		// Every process, also those outside a pid namespace, then the
		// container itself.
		r.Kill(ctx, o.id, int(syscall.SIGKILL), &runc.KillOpts{All: true})
		if err := r.Delete(ctx, o.id, &runc.DeleteOpts{Force: true}); err != nil {
			errs = append(errs, fmt.Errorf("runtime delete: %w", err))
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
// still belongs to a berth-shim serving this bundle (pids are reused).
func killShim(bundle string) {
	pid, err := shimapi.ReadPidFile(bundle)
	if err != nil {
		return
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return
	}
	args := strings.Split(string(bytes.TrimRight(cmdline, "\x00")), "\x00")
	if len(args) < 2 || args[1] != "serve" {
		return
	}
	for i, a := range args {
		if a == "--bundle" && i+1 < len(args) && args[i+1] == bundle {
			syscall.Kill(pid, syscall.SIGKILL)
			return
		}
	}
	// A spare was started in another folder, since renamed to the bundle:
	// its working folder names the bundle now.
	if slices.Contains(args, "--spare") {
		if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err == nil && cwd == bundle {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
