package task

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/berthrt/berth/mount"
)

// Volatile overlays. A task created with cleanup_on_exit (`run --rm`) has
// a root filesystem that nobody keeps: its snapshot is removed once the
// task is deleted, and it cannot outlive a crash of the host in any use.
// Its writable overlay is mounted with overlayfs's "volatile" option,
// which skips every sync of the upper filesystem: the container's own
// fsync and syncfs calls (a package manager makes many), and the sync of
// the whole upper filesystem that unmounting a writable overlay makes,
// 2.4 ms in the trace of an image run on this host (daemonbench's
// machine), partly ahead of the task's Delete. Podman does the same for
// --rm containers and CRI-O for all of its.
//
// overlayfs marks a work folder mounted volatile (work/incompat/volatile)
// and refuses to mount it again while the mark is there, since after a
// crash the upper folder may have lost writes. After its own clean unmount
// the shim knows that none were lost, and removes the mark, so that a new
// task of the same container still mounts the snapshot (the kernel's
// overlayfs documentation allows exactly that). A shim that dies with the
// overlay mounted leaves the mark: that snapshot then refuses to mount,
// the safe answer, until it is removed.

// volatileOption is overlayfs's mount option.
const volatileOption = "volatile"

// withVolatile returns mounts with "volatile" added to each writable
// overlay (one with an upperdir), and the work folders of those overlays;
// mounts itself is not changed.
func withVolatile(mounts []mount.Mount) ([]mount.Mount, []string) {
	var workdirs []string
	out := make([]mount.Mount, len(mounts))
	for i, m := range mounts {
		out[i] = m
		if m.Type != "overlay" || slices.Contains(m.Options, volatileOption) {
			continue
		}
		upper, work := overlayDirs(m.Options)
		if upper == "" || work == "" {
			continue
		}
		out[i].Options = append(slices.Clip(m.Options), volatileOption)
		workdirs = append(workdirs, work)
	}
	return out, workdirs
}

// mountVolatile mounts mounts at rootfs with their writable overlays
// volatile, and returns the work folders of those; false, with nothing
// mounted, when there is none or the mount fails (a kernel before 5.10
// refuses the option): the caller then mounts them as they are.
func (s *Service) mountVolatile(mounts []mount.Mount, rootfs string) ([]string, bool) {
	vmounts, workdirs := withVolatile(mounts)
	if len(workdirs) == 0 {
		return nil, false
	}
	err := mount.All(vmounts, rootfs)
	if err == nil {
		return workdirs, true
	}
	s.log.Warn("mount rootfs with overlayfs's volatile option; mounting without it", "error", err)
	// Nothing was written through it (mount.All undid what it mounted):
	// a mark it left may go.
	if cerr := clearVolatileMarks(workdirs); cerr != nil {
		s.log.Warn("clear overlayfs's volatile mark after a failed mount", "error", cerr)
	}
	return nil, false
}

// overlayDirs returns the upperdir and workdir options of an overlay.
func overlayDirs(options []string) (upper, work string) {
	for _, o := range options {
		if v, ok := strings.CutPrefix(o, "upperdir="); ok {
			upper = v
		} else if v, ok := strings.CutPrefix(o, "workdir="); ok {
			work = v
		}
	}
	return upper, work
}

// clearVolatileMarks removes overlayfs's volatile mark from each work
// folder, after the overlays were unmounted cleanly.
func clearVolatileMarks(workdirs []string) error {
	var errs []error
	for _, w := range workdirs {
		if !filepath.IsAbs(w) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(w, "work", "incompat", volatileOption)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
