package cgroup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// removeWait bounds RemoveLeft's retries of folders the kernel still finds
// busy: a process of the container that is exiting still counts for a
// moment, longer on a loaded host than runc 1.1's own retries (about
// 150 ms) last.
const removeWait = 2 * time.Second

// removeDepth bounds how deep RemoveLeft descends into folders the
// container made below its own (a cgroup namespace lets it make them).
const removeDepth = 32

// RemoveLeft removes the container's cgroup folders that are still there
// after the runtime deleted the container, in every hierarchy (folders is
// what Load found), folders the container made below them first. runc
// 1.1 reports a delete done and removes its state even when a folder was
// busy ("Failed to remove paths" in its log only), which leaves the
// folders for good: nothing else knows them. A folder is only ever
// removed with rmdir, which the kernel refuses while a process is in it,
// so a cgroup that another container shares or that still has processes
// is never taken from them. A busy folder is tried again until removeWait
// or ctx ends; the error names what is left.
func RemoveLeft(ctx context.Context, folders []string) error {
	ctx, cancel := context.WithTimeout(ctx, removeWait)
	defer cancel()
	left := folders
	delay := 10 * time.Millisecond
	for {
		var busy []string
		var errs []error
		busyAt := map[string]string{} // the folder below dir that holds processes
		for _, dir := range left {
			err := removeTree(dir, removeDepth)
			var pe *fs.PathError
			switch {
			case err == nil:
			case errors.Is(err, unix.EBUSY) && errors.As(err, &pe):
				busy = append(busy, dir)
				busyAt[dir] = pe.Path
			default:
				errs = append(errs, err)
			}
		}
		if len(busy) == 0 {
			return errors.Join(errs...)
		}
		left = busy
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			for _, dir := range busy {
				errs = append(errs, fmt.Errorf("cgroup %s still busy (processes %s in %s): %w", dir, procsOf(busyAt[dir]), busyAt[dir], unix.EBUSY))
			}
			return errors.Join(errs...)
		}
		delay = min(2*delay, 200*time.Millisecond)
	}
}

// removeTree removes dir and the folders below it, deepest first. A dir
// that is gone already is removed.
func removeTree(dir string, depth int) error {
	err := unix.Rmdir(dir)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.ENOTEMPTY) {
		return &fs.PathError{Op: "rmdir", Path: dir, Err: err}
	}
	if depth == 0 {
		return &fs.PathError{Op: "rmdir", Path: dir, Err: err}
	}
	entries, rerr := os.ReadDir(dir)
	if rerr != nil {
		if errors.Is(rerr, fs.ErrNotExist) {
			return nil
		}
		return rerr
	}
	sub := false
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		sub = true
		if err := removeTree(filepath.Join(dir, e.Name()), depth-1); err != nil {
			return err
		}
	}
	if !sub {
		return &fs.PathError{Op: "rmdir", Path: dir, Err: err} // busy with processes
	}
	if err := unix.Rmdir(dir); err != nil && !errors.Is(err, unix.ENOENT) {
		return &fs.PathError{Op: "rmdir", Path: dir, Err: err}
	}
	return nil
}

// procsOf returns the first pids listed in dir's cgroup.procs, for an
// error message.
func procsOf(dir string) string {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return "unknown: " + err.Error()
	}
	pids := strings.Fields(string(data))
	if len(pids) == 0 {
		return "none"
	}
	if len(pids) > 8 {
		pids = append(pids[:8], "…")
	}
	return strings.Join(pids, " ")
}

// folders returns the cgroup folders of a process, from its
// /proc/PID/cgroup lines, in every mounted hierarchy: each v1 hierarchy
// under the mount that carries its first controller (or name=), and the v2
// path under the cgroup2 mount. A root path is never among them (a
// process in the root cgroup has no folder of its own), nor a path
// outside what is mounted.
func folders(data []byte, mounts []*mountinfo.Info) []string {
	var out []string
	seen := map[string]bool{}
	for line := range strings.Lines(string(data)) {
		parts := strings.SplitN(strings.TrimSuffix(line, "\n"), ":", 3)
		if len(parts) != 3 || parts[2] == "/" || parts[2] == "" {
			continue
		}
		var dir string
		if parts[0] == "0" && parts[1] == "" {
			dir = unifiedDir(mounts, parts[2])
		} else {
			dir = v1Dir(mounts, strings.Split(parts[1], ",")[0], parts[2])
		}
		if dir != "" && !seen[dir] {
			seen[dir] = true
			out = append(out, dir)
		}
	}
	return out
}

// PathFolders returns the folders of the cgroup path (an OCI spec's
// linux.cgroupsPath, cgroupfs style: absolute) in every cgroup hierarchy
// mounted on this host, for RemoveLeft when no process of the container
// is left to read them from. A path that is not absolute (relative to the
// runtime's own cgroup, or a systemd slice) or the root has none.
func PathFolders(path string) ([]string, error) {
	if !strings.HasPrefix(path, "/") || strings.Contains(path, ":") || filepath.Clean(path) == "/" {
		return nil, nil
	}
	path = filepath.Clean(path)
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range mounts {
		if dir, ok := mountedDir(m, path); ok && !slices.Contains(out, dir) {
			out = append(out, dir)
		}
	}
	return out, nil
}
