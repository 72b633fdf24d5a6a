package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/berthrt/berth/bench/internal/proc"
	"golang.org/x/sys/unix"
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
		if d == "" {
			continue
		}
		if points := mountsUnder(d); len(points) > 0 {
			for _, p := range points {
				if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
					errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
				}
			}
			errs = append(errs, fmt.Errorf("leaked mounts under %s (now detached): %s", d, strings.Join(points, ", ")))
		}
	}
	if w.ns != "" {
		// berth and the floor: /berth/<ns>/<id>; containerd: /<ns>/<id>.
		for _, pattern := range []string{"/sys/fs/cgroup/*/berth/" + w.ns, "/sys/fs/cgroup/berth/" + w.ns, "/sys/fs/cgroup/*/" + w.ns, "/sys/fs/cgroup/" + w.ns} {
			dirs, _ := filepath.Glob(pattern)
			for _, d := range dirs {
				if err := removeDirs(d); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	for _, d := range []string{w.run, w.dir} {
		if d != "" {
			if err := os.RemoveAll(d); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// removeDirs removes dir and the folders below it, deepest first, as long
// as they are empty, and says which it could not remove. It suits cgroups:
// a cgroup's files cannot be removed, only its folder once it has no
// process and no child cgroup.
func removeDirs(dir string) error {
	var dirs []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	slices.Reverse(dirs)
	var errs []error
	for _, d := range dirs {
		if err := unix.Rmdir(d); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("remove %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// mountsUnder returns the mount points in this mount namespace under dir,
// deepest first.
func mountsUnder(dir string) []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			points = append(points, f[4])
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	return points
}
