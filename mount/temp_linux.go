package mount

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/fsperm"
)

// TempMountPerm is the mode of a folder that holds temporary mounts:
// what is mounted there is often a container's filesystem, with setuid
// files and device nodes it planted, which no host user but root may
// reach (the CVE-2021-41103 class).
const TempMountPerm = 0o700

// WithTempMount mounts mounts (as All does) on a new folder under dir,
// runs fn on that folder, then unmounts and removes it, also when fn
// fails. dir is made TempMountPerm when missing and tightened to it when
// it exists: the new folder takes the mode of what is mounted on it, so
// dir is the lock. Every mount also gets nosuid and nodev, a second lock
// for as long as the mount lives. An empty dir is refused: a temporary
// mount never goes to a shared folder such as /tmp.
func WithTempMount(dir string, mounts []Mount, fn func(root string) error) (err error) {
	if dir == "" || !filepath.IsAbs(dir) {
		return fmt.Errorf("temporary mount: folder %q is not an absolute path: %w", dir, errdefs.ErrInvalidArgument)
	}
	if err := fsperm.Restrict(dir, TempMountPerm); err != nil {
		return fmt.Errorf("temporary mount: %w", err)
	}
	root, err := os.MkdirTemp(dir, "m-")
	if err != nil {
		return fmt.Errorf("temporary mount: %w", err)
	}
	defer func() {
		if rerr := os.Remove(root); rerr != nil {
			err = errors.Join(err, fmt.Errorf("remove temporary mount folder: %w", rerr))
		}
	}()
	if err := All(confined(mounts), root); err != nil {
		return err
	}
	defer func() {
		if uerr := UnmountAll(root, 0); uerr != nil {
			err = errors.Join(err, fmt.Errorf("unmount temporary mount: %w", uerr))
		}
	}()
	return fn(root)
}

// CleanupTempMounts unmounts and removes what WithTempMount left under dir
// when its process was killed while fn ran. Only the owner of dir may call
// it, when no WithTempMount runs there.
func CleanupTempMounts(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if err := UnmountAll(p, 0); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.Remove(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// confined returns mounts with nosuid and nodev added.
func confined(mounts []Mount) []Mount {
	out := make([]Mount, len(mounts))
	for i, m := range mounts {
		m.Options = slices.Clone(m.Options)
		for _, o := range []string{"nosuid", "nodev"} {
			if !slices.Contains(m.Options, o) {
				m.Options = append(m.Options, o)
			}
		}
		out[i] = m
	}
	return out
}
