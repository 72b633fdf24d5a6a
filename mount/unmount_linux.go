package mount

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/errdefs"
)

const (
	// busyRetries is how often an unmount refused with EBUSY is retried
	// before it falls back to a lazy detach (MNT_DETACH).
	busyRetries = 4
	// busyBackoff is the first pause between retries; it doubles each
	// time, 150 ms in all.
	busyBackoff = 10 * time.Millisecond
)

// unmountFlags are the flags unmount(2) knows. An unknown one would make
// every call fail with EINVAL, which UnmountAll takes as "not mounted".
const unmountFlags = unix.MNT_FORCE | unix.MNT_DETACH | unix.MNT_EXPIRE | unix.UMOUNT_NOFOLLOW

// UnmountAll unmounts every mount at target and below it, deepest first and
// stacked mounts top first, with unmount(2) flags. It returns nil when
// nothing was mounted, including when target does not exist.
func UnmountAll(target string, flags int) error {
	if flags&^unmountFlags != 0 {
		return fmt.Errorf("unmount all at %q: unknown flags %#x: %w", target, flags&^unmountFlags, errdefs.ErrInvalidArgument)
	}
	path, err := filepath.EvalSymlinks(target)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("unmount all at %q: %w", target, err)
	}
	if path, err = filepath.Abs(path); err != nil {
		return fmt.Errorf("unmount all at %q: %w", target, err)
	}
	if path == "/" {
		return fmt.Errorf("unmount all at %q: refusing to unmount the root: %w", target, errdefs.ErrInvalidArgument)
	}

	// A mount can hide another (one at /a stacked over one at /a/b) or
	// hold submounts that make it busy until they are gone: repeat passes
	// while they make progress, and only when a pass is stuck on busy
	// mounts, wait those out and detach them.
	for {
		mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(path))
		if err != nil {
			return fmt.Errorf("unmount all at %q: %w", target, err)
		}
		// mountinfo lists mounts in the order they were made; walk it
		// backwards so a stacked mount comes before the one beneath it,
		// then put deeper mount points first.
		slices.Reverse(mounts)
		slices.SortStableFunc(mounts, func(a, b *mountinfo.Info) int {
			return cmp.Compare(len(b.Mountpoint), len(a.Mountpoint))
		})

		progress := false
		var busy []string
		var errs []error
		for _, mi := range mounts {
			err := unix.Unmount(mi.Mountpoint, flags)
			switch {
			case err == nil:
				progress = true
			case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			case errors.Is(err, unix.EBUSY):
				busy = append(busy, mi.Mountpoint)
			default:
				errs = append(errs, &os.PathError{Op: "unmount", Path: mi.Mountpoint, Err: err})
			}
		}
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
		if progress {
			continue
		}
		for _, mp := range busy {
			done, err := unmountOne(mp, flags)
			progress = progress || done
			if err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 || !progress {
			return errors.Join(errs...)
		}
	}
}

// unmountOne unmounts the top mount at target. It reports whether it
// unmounted something; EINVAL (not a mount point) and ENOENT (gone) count as
// done already. EBUSY is retried briefly, then the mount is detached.
func unmountOne(target string, flags int) (bool, error) {
	delay := busyBackoff
	for attempt := 0; ; attempt++ {
		err := unix.Unmount(target, flags)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return false, nil
		case errors.Is(err, unix.EBUSY) && attempt < busyRetries:
			time.Sleep(delay)
			delay *= 2
		case errors.Is(err, unix.EBUSY) && flags&unix.MNT_DETACH == 0:
			flags |= unix.MNT_DETACH
		default:
			return false, &os.PathError{Op: "unmount", Path: target, Err: err}
		}
	}
}
