// Package cgroupclean removes the cgroup folders of a deleted container
// that its runtime left. runc 1.1 gives a folder that is still busy (a
// process of the container on its way out, or any process put there) about
// 150 ms of retries, then logs "Failed to remove paths", removes its state
// and reports the delete done: the folders stay in every hierarchy for
// good, and nothing else knows them. berthd removes them when it removes a
// deleted container's bundle, from the bundle's linux.cgroupsPath.
//
// It lives in the daemon rather than in the shim: every byte of the
// shim's code is resident in every shim (bench/README.md).
//
// A folder is only ever removed with rmdir, which the kernel refuses while
// a process is in it: a cgroup that another container shares, or that
// still has processes, is never taken from them.
package cgroupclean

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// removeWait bounds the retries of folders the kernel still finds busy.
const removeWait = 2 * time.Second

// removeDepth bounds how deep a removal descends into folders the
// container made below its own (a cgroup namespace lets it make them).
const removeDepth = 32

// maxSpec bounds how much of a bundle's config.json is read.
const maxSpec = 4 << 20

// BundleLeft removes what is left of the cgroup of the container whose
// bundle is the folder bundle (its config.json's linux.cgroupsPath), once
// the runtime deleted it. A bundle without a readable spec, or a spec
// without an absolute cgroupfs path, has nothing to remove.
func BundleLeft(ctx context.Context, bundle string) error {
	path, err := specCgroupsPath(filepath.Join(bundle, "config.json"))
	if err != nil || path == "" {
		return nil
	}
	folders, err := PathFolders(path)
	if err != nil {
		return err
	}
	return RemoveLeft(ctx, folders)
}

func specCgroupsPath(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var spec struct {
		Linux *struct {
			CgroupsPath string `json:"cgroupsPath"`
		} `json:"linux"`
	}
	if err := json.NewDecoder(io.LimitReader(f, maxSpec)).Decode(&spec); err != nil || spec.Linux == nil {
		return "", err
	}
	return spec.Linux.CgroupsPath, nil
}

// PathFolders returns the folders of the cgroup path (an OCI spec's
// linux.cgroupsPath, cgroupfs style: absolute) in every cgroup hierarchy
// mounted on this host. A path that is not absolute (relative to the
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
		rel, ok := strings.CutPrefix(path, m.Root)
		if !ok || (rel != "" && rel[0] != '/' && m.Root != "/") {
			continue // outside the mounted part of the hierarchy
		}
		if dir := filepath.Join(m.Mountpoint, rel); !slices.Contains(out, dir) {
			out = append(out, dir)
		}
	}
	return out, nil
}

// RemoveLeft removes the folders that are still there, folders below them
// first. A busy folder is tried again until removeWait or ctx ends; the
// error names what is left and the processes that hold it.
func RemoveLeft(ctx context.Context, folders []string) error {
	ctx, cancel := context.WithTimeout(ctx, removeWait)
	defer cancel()
	left := folders
	delay := 10 * time.Millisecond
	for {
		var busy []string
		var errs []error
		busyAt := map[string]string{} // the folder at or below dir that holds processes
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
	if (!errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.ENOTEMPTY)) || depth == 0 {
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
