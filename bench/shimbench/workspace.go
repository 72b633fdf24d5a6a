package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/oci"
	"golang.org/x/sys/unix"
)

const (
	// commandTimeout bounds one runc or berth-shim invocation, so that a hung
	// runtime ends the benchmark instead of blocking it forever.
	commandTimeout = 60 * time.Second
	// cleanupTimeout bounds the RPCs and commands of the final cleanup.
	cleanupTimeout = 30 * time.Second
	// reapGrace is how long a process may take to exit by itself before it
	// is killed.
	reapGrace = 2 * time.Second
	// killGrace is how long a killed process may take to disappear.
	killGrace = 5 * time.Second
)

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

	floors map[string]int           // containers made with runc directly: id to init pid (0 until known)
	shims  map[string]*shimInstance // shims started and not yet stopped, by container id
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
		floors:    map[string]int{},
		shims:     map[string]*shimInstance{},
	}
	defer func() {
		if retErr != nil {
			retErr = errors.Join(retErr, w.Close())
		}
	}()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("become a child subreaper: %w", err)
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

// writeBundle makes the bundle folder of id with a config.json that runs
// args on the shared rootfs.
func (w *workspace) writeBundle(ctx context.Context, id string, args ...string) (string, error) {
	bundle := filepath.Join(w.dir, id)
	if err := os.Mkdir(bundle, 0o711); err != nil {
		return "", err
	}
	spec, err := oci.GenerateSpec(ctx, w.namespace, id, oci.WithProcessArgs(args...), oci.WithRootFSPath(w.rootfs))
	if err != nil {
		return "", err
	}
	data, err := json.Marshal(spec)
	if err != nil {
		return "", err
	}
	return bundle, os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644)
}

// command returns a command bounded by commandTimeout, in its own process
// group so that a Ctrl-C on the terminal reaches only the benchmark, which
// then cleans up, and not a runc halfway through a create.
func command(name string, args ...string) (*exec.Cmd, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = time.Second
	return cmd, cancel
}

// run runs a command whose output only matters to explain a failure.
func run(name string, args ...string) error {
	cmd, cancel := command(name, args...)
	defer cancel()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
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
	for id, pid := range w.floors {
		if err := run(w.runtime, "--root", w.runcRoot, "delete", "--force", id); err != nil {
			errs = append(errs, err)
		}
		if pid > 0 {
			errs = append(errs, reap(pid))
		}
		delete(w.floors, id)
	}
	errs = append(errs, w.sweepRuntime())
	errs = append(errs, w.unmountAll())
	reapZombies()
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
		ctx, cancel := context.WithTimeout(context.Background(), reapGrace)
		s.shutdown(ctx)
		cancel()
		s.client.Close()
	}
	if s.pid > 0 {
		errs = append(errs, reap(s.pid))
	}
	errs = append(errs, run(w.shimBin, "delete", "--namespace", w.namespace, "--id", s.id,
		"--bundle", s.bundle, "--runtime", w.runtime, "--runtime-root", w.runcRoot))
	return errors.Join(errs...)
}

// sweepRuntime force-deletes any container still known to runc: one whose
// create was interrupted before the benchmark learned of it.
func (w *workspace) sweepRuntime() error {
	if _, err := os.Stat(w.runcRoot); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	cmd, cancel := command(w.runtime, "--root", w.runcRoot, "list", "--quiet")
	defer cancel()
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("runc list: %w", err)
	}
	var errs []error
	for _, id := range strings.Fields(string(out)) {
		errs = append(errs, run(w.runtime, "--root", w.runcRoot, "delete", "--force", id))
	}
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

// reap waits for pid to exit and collects it: by itself within reapGrace,
// or after SIGKILL. A pid that is not a child of this process counts as
// gone once it no longer exists.
func reap(pid int) error {
	deadline := time.Now().Add(reapGrace)
	killed := false
	for {
		gone, err := exited(pid)
		if err != nil || gone {
			return err
		}
		if time.Now().After(deadline) {
			if killed {
				return fmt.Errorf("pid %d survives SIGKILL", pid)
			}
			if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("kill %d: %w", pid, err)
			}
			killed, deadline = true, time.Now().Add(killGrace)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// exited reports whether pid has exited, collecting it when it is a child.
func exited(pid int) (bool, error) {
	var ws unix.WaitStatus
	wpid, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
	switch {
	case err == nil:
		return wpid == pid, nil
	case errors.Is(err, unix.EINTR):
		return false, nil
	case errors.Is(err, unix.ECHILD):
		return errors.Is(unix.Kill(pid, 0), unix.ESRCH), nil
	default:
		return false, fmt.Errorf("wait4 %d: %w", pid, err)
	}
}

// waitExit blocks until pid, a child of this process, exits and returns
// its exit code (128+signal when killed).
func waitExit(pid int) (int, error) {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("wait4 %d: %w", pid, err)
		}
		if ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ws.ExitStatus(), nil
	}
}

// reapZombies collects every exited child: processes reparented to this
// subreaper whose pid the benchmark never learned. Call it only when no
// exec.Cmd is running.
func reapZombies() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
	}
}

// readPid reads a pid file written by runc.
func readPid(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: bad content %q", path, data)
	}
	return pid, nil
}
