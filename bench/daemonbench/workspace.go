package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/berthrt/berth/bench/internal/proc"
	"github.com/berthrt/berth/bench/internal/sweep"
)

// workspace is the two folders one benchmark run makes, and the namespace
// that names everything else it makes: containers of both daemons and of
// the floor, and their cgroups. It is owned by the main goroutine.
type workspace struct {
	dir    string // temp folder: rootfs, the daemons' roots, configs, logs
	run    string // short folder under /run: the daemons' state and sockets, floor bundles
	rootfs string // busybox folder, the root of every container
	ns     string // unique per run: berth and containerd namespace, cgroup level
	seq    int    // makes ids unique within the run
}

// newWorkspace makes both folders and the busybox rootfs with script. On
// error nothing is left behind.
func newWorkspace(script string) (_ *workspace, retErr error) {
	dir, err := os.MkdirTemp("", "berth-daemonbench-")
	if err != nil {
		return nil, err
	}
	w := &workspace{dir: dir, rootfs: filepath.Join(dir, "rootfs")}
	defer func() {
		if retErr != nil {
			retErr = errors.Join(retErr, w.Close())
		}
	}()
	// State folders hold unix sockets, whose paths are limited to 107
	// bytes: a shim's is <state>/<namespace>/<id>/shim.sock.
	if w.run, err = os.MkdirTemp("/run", "bdb-"); err != nil {
		return nil, err
	}
	w.ns = "bench-" + strings.TrimPrefix(filepath.Base(w.run), "bdb-")
	if err := proc.Run(script, w.rootfs); err != nil {
		return nil, fmt.Errorf("busybox rootfs: %w", err)
	}
	return w, nil
}

// newID returns a container id not used before in this run.
func (w *workspace) newID(kind string) string {
	w.seq++
	return fmt.Sprintf("%s-%d", kind, w.seq)
}

// Close detaches what is still mounted under either folder (a leak, so it
// is reported), removes the run's cgroups and both folders. The daemons and
// their containers must be gone already.
func (w *workspace) Close() error {
	var errs []error
	for _, d := range []string{w.run, w.dir} {
		if d != "" {
			errs = append(errs, sweep.Mounts(d))
		}
	}
	if w.ns != "" {
		// berth and the floor: /berth/<ns>/<id>; containerd: /<ns>/<id>.
		errs = append(errs, sweep.Cgroups(w.ns))
	}
	for _, d := range []string{w.run, w.dir} {
		if d != "" {
			errs = append(errs, os.RemoveAll(d))
		}
	}
	return errors.Join(errs...)
}
