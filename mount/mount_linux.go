package mount

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/errdefs"
)

// Mount is one mount: Type and Source as for mount(8), Target relative to
// the root it is mounted under ("" is the root itself), Options fstab-style.
// Type "bind", or a bind or rbind option, makes it a bind mount.
type Mount struct {
	Type    string
	Source  string
	Target  string
	Options []string
}

// Mount mounts m at target, an absolute path, ignoring m.Target. A bind
// mount with per-mount flags (ro, nosuid, nodev, noexec, atime modes) is
// remounted to apply them, and a propagation option is applied last; if
// either step fails the new mount is unmounted again.
func (m Mount) Mount(target string) error {
	if !filepath.IsAbs(target) {
		return fmt.Errorf("mount %s: target %q is not absolute: %w", m.describe(), target, errdefs.ErrInvalidArgument)
	}
	flags, propagation, data := ParseOptions(m.Options)
	if m.Type == "bind" {
		flags |= unix.MS_BIND
	}
	pageSize := os.Getpagesize()
	dir := ""
	if len(data) >= pageSize && m.Type == "overlay" {
		if d, opts, ok := compactLowerdir(m.Options); ok {
			dir = d
			_, _, data = ParseOptions(opts)
		}
	}
	if len(data) >= pageSize {
		return fmt.Errorf("mount %s on %q: data is %d bytes, mount(2) takes less than %d: %w",
			m.describe(), target, len(data), pageSize, errdefs.ErrInvalidArgument)
	}

	if err := mountFrom(dir, m.Source, target, m.Type, flags, data); err != nil {
		return fmt.Errorf("mount %s on %q: %w", m.describe(), target, err)
	}
	created := flags&unix.MS_REMOUNT == 0 // a remount made no new mount to undo

	var err error
	if flags&unix.MS_BIND != 0 && created && flags&perMountFlags != 0 {
		if rerr := unix.Mount("", target, "", unix.MS_REMOUNT|unix.MS_BIND|flags&perMountFlags, ""); rerr != nil {
			err = fmt.Errorf("remount bind %q with flags %#x: %w", target, flags&perMountFlags, rerr)
		}
	}
	if err == nil && propagation != 0 {
		if perr := unix.Mount("", target, "", propagation, ""); perr != nil {
			err = fmt.Errorf("set propagation %#x on %q: %w", propagation, target, perr)
		}
	}
	if err != nil && created {
		if _, uerr := unmountOne(target, 0); uerr != nil {
			err = errors.Join(err, fmt.Errorf("undo mount: %w", uerr))
		}
	}
	return err
}

// All mounts mounts in order, each at its Target resolved inside root,
// creating a missing target: a folder, or an empty file when a bind
// mount's source is not a folder. When a mount fails, the ones before it
// are unmounted in reverse order; the error names the failing mount and
// joins the rollback errors.
func All(mounts []Mount, root string) error {
	if !filepath.IsAbs(root) {
		return fmt.Errorf("mount root %q is not absolute: %w", root, errdefs.ErrInvalidArgument)
	}
	done := make([]string, 0, len(mounts))
	for i, m := range mounts {
		target, err := m.prepareTarget(root)
		if err == nil {
			err = m.Mount(target)
		}
		if err == nil {
			done = append(done, target)
			continue
		}
		errs := []error{fmt.Errorf("mounts[%d] (target %q under %q): %w", i, m.Target, root, err)}
		for j := len(done) - 1; j >= 0; j-- {
			if _, uerr := unmountOne(done[j], 0); uerr != nil {
				errs = append(errs, fmt.Errorf("rollback: %w", uerr))
			}
		}
		return errors.Join(errs...)
	}
	return nil
}

// prepareTarget resolves m.Target inside root and makes sure something
// exists there to mount on.
func (m Mount) prepareTarget(root string) (string, error) {
	target, err := securejoin.SecureJoin(root, m.Target)
	if err != nil {
		return "", fmt.Errorf("resolve target: %w", err)
	}
	if _, err := os.Lstat(target); err == nil {
		return target, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if m.isBind() {
		if st, err := os.Stat(m.Source); err == nil && !st.IsDir() {
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return "", err
			}
			f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
			if err != nil {
				return "", err
			}
			return target, f.Close()
		}
	}
	return target, os.MkdirAll(target, 0o755)
}

func (m Mount) isBind() bool {
	flags, _, _ := ParseOptions(m.Options)
	return m.Type == "bind" || flags&unix.MS_BIND != 0
}

func (m Mount) describe() string {
	return fmt.Sprintf("%s %q", m.Type, m.Source)
}
