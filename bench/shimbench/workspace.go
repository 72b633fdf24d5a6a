package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/berthrt/berth/bench/internal/floor"
	"github.com/berthrt/berth/bench/internal/proc"
	"github.com/berthrt/berth/internal/testutil"
	"golang.org/x/sys/unix"
)

// shutdownGrace is how long an abandoned shim may take to answer Shutdown.
const shutdownGrace = 2 * time.Second

// workspace is everything one benchmark run creates: a single temporary
// folder holding the busybox rootfs, the runc root and one bundle per
// container, plus the containers and shims alive at any moment. It is owned
// by the main goroutine; Close deletes every container, stops every shim and
// removes the folder.
type workspace struct {
	dir       string // the one temp folder: everything made lives inside
	rootfs    string // plain busybox folder, the root of every container
	runcRoot  string // runc's state folder, shared by both paths
	namespace string // unique per run: cgroups are /berth/<namespace>/<id>
	runtime   string // absolute path of runc
	shimBin   string // absolute path of berth-shim
	seq       int    // makes ids unique within the run

	floor *floor.Runner            // the runc floor; writes every bundle, in dir
	shims map[string]*shimInstance // shims started and not yet stopped, by container id
}

// newWorkspace makes the temp folder and the rootfs, and makes this process
// a child subreaper: containers created by runc directly, and shims once
// `berth-shim start` exits, become its children, so it can wait4 for their
// exit instead of polling, and reap them. On error nothing is left behind.
func newWorkspace(runtime, shimBin, busybox string) (_ *workspace, retErr error) {
	dir, err := os.MkdirTemp("", "berth-shimbench-")
	if err != nil {
		return nil, err
	}
	w := &workspace{
		dir:       dir,
		rootfs:    filepath.Join(dir, "rootfs"),
		runcRoot:  filepath.Join(dir, "runc"),
		namespace: "bench-" + filepath.Base(dir)[len("berth-shimbench-"):],
		runtime:   runtime,
		shimBin:   shimBin,
		shims:     map[string]*shimInstance{},
	}
	w.floor = &floor.Runner{Runtime: runtime, Root: w.runcRoot, Dir: dir, Rootfs: w.rootfs, Namespace: w.namespace}
	defer func() {
		if retErr != nil {
			retErr = errors.Join(retErr, w.Close())
		}
	}()
	if err := proc.SetSubreaper(true); err != nil {
		return nil, err
	}
	if err := os.Mkdir(w.rootfs, 0o755); err != nil {
		return nil, err
	}
	if err := testutil.MakeBusyboxRootfs(busybox, w.rootfs); err != nil {
		return nil, fmt.Errorf("busybox rootfs: %w", err)
	}
	return w, nil
}

// newID returns a container id not used before in this run.
func (w *workspace) newID(kind string) string {
	w.seq++
	return fmt.Sprintf("%s-%d", kind, w.seq)
}

// Close deletes what is left of every container and shim, unmounts
// anything mounted under the folder, removes the run's cgroups and the
// folder. It reports what it could not clean.
func (w *workspace) Close() error {
	var errs []error
	for id, s := range w.shims {
		errs = append(errs, w.abandonShim(s))
		delete(w.shims, id)
	}
	// The floor's Close also force-deletes what runc still lists under the
	// shared root: containers whose create was interrupted before the
	// benchmark learned of them, of either path.
	errs = append(errs, w.floor.Close())
	errs = append(errs, w.unmountAll())
	proc.ReapZombies()
	w.removeCgroups()
	if err := os.RemoveAll(w.dir); err != nil {
		errs = append(errs, err)
	}
	if left := w.mounts(); len(left) > 0 {
		errs = append(errs, fmt.Errorf("still mounted under %s: %s", w.dir, strings.Join(left, ", ")))
	}
	return errors.Join(errs...)
}

// abandonShim stops a shim that did not finish its run: shut it down (or
// kill it), then let `berth-shim delete` force-delete its container and
// unmount its rootfs.
func (w *workspace) abandonShim(s *shimInstance) error {
	var errs []error
	if s.client != nil {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		s.shutdown(ctx)
		cancel()
		s.client.Close()
	}
	if s.pid > 0 {
		errs = append(errs, proc.Reap(s.pid))
	}
	errs = append(errs, proc.Run(w.shimBin, "delete", "--namespace", w.namespace, "--id", s.id,
		"--bundle", s.bundle, "--runtime", w.runtime, "--runtime-root", w.runcRoot))
	return errors.Join(errs...)
}

// mounts returns the mount points in this mount namespace under the
// folder, deepest first.
func (w *workspace) mounts() []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == w.dir || strings.HasPrefix(f[4], w.dir+"/")) {
			points = append(points, f[4])
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	return points
}

// unmountAll detaches every mount under the folder. The benchmark mounts
// nothing itself; a mount here is a leak of the shim or runc, so it is
// reported as well as removed.
func (w *workspace) unmountAll() error {
	points := w.mounts()
	var errs []error
	for _, p := range points {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	if len(points) > 0 {
		errs = append(errs, fmt.Errorf("leaked mounts under %s (now detached): %s", w.dir, strings.Join(points, ", ")))
	}
	return errors.Join(errs...)
}

// removeCgroups removes the run's namespace level of the container cgroups
// (/berth/<namespace>), which runc leaves when it deletes a container. The
// namespace is unique to this run; rmdir only removes an empty cgroup.
func (w *workspace) removeCgroups() {
	for _, pattern := range []string{"/sys/fs/cgroup/*/berth/" + w.namespace, "/sys/fs/cgroup/berth/" + w.namespace} {
		dirs, _ := filepath.Glob(pattern)
		for _, d := range dirs {
			os.Remove(d)
		}
	}
}
