package archive

import (
	"errors"
	"fmt"
	"os"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/errdefs"
)

// InheritParents gives each folder of names (relative to root, as
// WithMadeParents reports them) the owner, mode and times of the same
// folder in the topmost of parents (lower folders, topmost first) that
// has one, as Apply WithParents would have when it made them. A name that
// is no longer a folder of root, or is reached through a symlink, is left
// alone: the layer replaced it.
func InheritParents(root string, parents []string, names []string) error {
	if len(parents) == 0 {
		return nil
	}
	t, err := openTree(root)
	if err != nil {
		return err
	}
	defer t.close()
	owner := os.Geteuid() == 0
	for _, name := range names {
		clean, err := cleanName(name, DefaultLimits.MaxNameLen)
		if err != nil || clean == "" {
			return fmt.Errorf("inherit folder %q: %w", name, errdefs.ErrInvalidArgument)
		}
		dir, base := splitName(clean)
		fd, err := unix.Openat2(t.fd, dirOrDot(dir), &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		})
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "openat2", Path: dir, Err: err}
		}
		var st unix.Stat_t
		if err := unix.Fstatat(fd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			err = inherit(parents, owner, fd, base, clean)
		} else {
			err = nil
		}
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("inherit folder %q: %w", name, err)
		}
	}
	return nil
}

func dirOrDot(dir string) string {
	if dir == "" {
		return "."
	}
	return dir
}

// inherit gives the folder name in dirfd (rel from root) the owner (when
// owner), mode and times of rel in the topmost of parents that has it as
// a folder; nothing when none has.
func inherit(parents []string, owner bool, dirfd int, name, rel string) error {
	for _, p := range parents {
		src, err := securejoin.SecureJoin(p, rel)
		if err != nil {
			return err
		}
		var sys unix.Stat_t
		if err := unix.Lstat(src, &sys); err != nil || sys.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		if owner {
			if err := unix.Fchownat(dirfd, name, int(sys.Uid), int(sys.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return err
			}
		}
		if err := unix.Fchmodat(dirfd, name, sys.Mode&0o7777, 0); err != nil {
			return err
		}
		return setTimes(dirfd, name, time.Unix(sys.Atim.Unix()), time.Unix(sys.Mtim.Unix()))
	}
	return nil
}
