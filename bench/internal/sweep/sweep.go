// Package sweep removes what a benchmark's daemons should have removed
// themselves and did not: containers runc still knows, shims still
// running, mounts and cgroups left behind. Whatever it finds is reported
// as an error, since a clean run leaves nothing for it.
package sweep

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/bench/internal/proc"
)

// Containers force-deletes the containers runc (runtime) still lists
// under runcRoot.
func Containers(runtime, runcRoot string) error {
	if _, err := os.Stat(runcRoot); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	// Standard output only: a warning of runc on stderr is no container id.
	out, err := exec.Command(runtime, "--root", runcRoot, "list", "--quiet").Output()
	if err != nil {
		return fmt.Errorf("runc --root %s list: %w", runcRoot, err)
	}
	ids := strings.Fields(string(out))
	if len(ids) == 0 {
		return nil
	}
	errs := []error{fmt.Errorf("containers left in %s (now force-deleted): %s", runcRoot, strings.Join(ids, " "))}
	for _, id := range ids {
		errs = append(errs, proc.Run(runtime, "--root", runcRoot, "delete", "--force", id))
	}
	return errors.Join(errs...)
}

// Processes kills and reaps the live processes whose command line holds
// every one of words (proc.Matching): shims of a namespace unique to the
// run.
func Processes(words ...string) error {
	return Pids(fmt.Sprintf("%q", words), proc.Matching(words...))
}

// Pids kills and reaps the live processes pids, named what in the error.
func Pids(what string, pids []int) error {
	if len(pids) == 0 {
		return nil
	}
	// Each named by its command line and working folder, read before the
	// kill: what was left says which path of the daemon left it.
	var named []string
	for _, pid := range pids {
		cwd, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/cwd")
		named = append(named, fmt.Sprintf("%d (%s; in %s)", pid, strings.Join(proc.Args(pid), " "), cwd))
	}
	errs := []error{fmt.Errorf("processes %s left running (now killed): %s", what, strings.Join(named, ", "))}
	for _, pid := range pids {
		unix.Kill(pid, unix.SIGKILL)
		errs = append(errs, proc.Reap(pid))
	}
	return errors.Join(errs...)
}

// Mounts detaches every mount point under dir, deepest first.
func Mounts(dir string) error {
	points := mountsUnder(dir)
	if len(points) == 0 {
		return nil
	}
	errs := []error{fmt.Errorf("mounts left under %s (now detached): %s", dir, strings.Join(points, ", "))}
	for _, p := range points {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
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

// Cgroups removes the cgroup folders named level under the cgroup root
// and under berth/ (berth: /berth/<ns>/<id>; containerd: /<ns>/<id>), in
// every v1 hierarchy and the unified one. Their containers must be gone.
func Cgroups(level string) error {
	var errs []error
	for _, pattern := range []string{"/sys/fs/cgroup/*/berth/" + level, "/sys/fs/cgroup/berth/" + level, "/sys/fs/cgroup/*/" + level, "/sys/fs/cgroup/" + level} {
		dirs, _ := filepath.Glob(pattern)
		for _, d := range dirs {
			errs = append(errs, EmptyDirs(d))
		}
	}
	return errors.Join(errs...)
}

// EmptyDirs removes dir and the folders below it, deepest first, as long
// as they are empty (which suits cgroups: a cgroup's files cannot be
// removed, only its folder), and says which it could not remove.
func EmptyDirs(dir string) error {
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
