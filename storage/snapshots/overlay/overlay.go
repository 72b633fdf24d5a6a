package overlay

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/mount"
	"github.com/berthrt/berth/snapshots"
	"github.com/berthrt/berth/storage/snapshots/internal/fsstore"
)

// Name is the snapshotter's name, in lease resources and GC labels.
const Name = "overlayfs"

// New opens the overlay snapshotter whose files live in root, an absolute
// path; see the package documentation.
func New(root string) (snapshots.Snapshotter, error) {
	if strings.ContainsAny(root, `,:\`) {
		return nil, fmt.Errorf("%s: root %q holds ',', ':' or '\\', which overlay options cannot carry: %w",
			Name, root, errdefs.ErrInvalidArgument)
	}
	_, err := os.Stat("/sys/module/overlay/parameters/index")
	return fsstore.New(Name, root, driver{indexOff: err == nil})
}

// CheckFolders lists, read-only, the folders under root that no snapshot
// names and the snapshots whose folder is gone; see fsstore.CheckFolders.
func CheckFolders(root string) (unknown, missing []string, err error) {
	return fsstore.CheckFolders(root)
}

type driver struct {
	indexOff bool // the kernel knows the index option
}

func fsDir(dir string) string   { return filepath.Join(dir, "fs") }
func workDir(dir string) string { return filepath.Join(dir, "work") }

func (d driver) Create(dir string, kind snapshots.Kind, _ []string) error {
	if err := os.Mkdir(fsDir(dir), 0o755); err != nil {
		return err
	}
	if kind == snapshots.KindActive {
		return os.Mkdir(workDir(dir), 0o700)
	}
	return nil
}

func (d driver) Mounts(dir string, kind snapshots.Kind, parents []string) []mount.Mount {
	switch {
	case len(parents) == 0:
		mode := "rw"
		if kind == snapshots.KindView {
			mode = "ro"
		}
		return []mount.Mount{{Type: "bind", Source: fsDir(dir), Options: []string{"rbind", mode}}}
	case kind == snapshots.KindView && len(parents) == 1:
		return []mount.Mount{{Type: "bind", Source: fsDir(parents[0]), Options: []string{"rbind", "ro"}}}
	}
	var opts []string
	if d.indexOff {
		opts = append(opts, "index=off")
	}
	if kind == snapshots.KindActive {
		opts = append(opts, "workdir="+workDir(dir), "upperdir="+fsDir(dir))
	}
	lowers := make([]string, len(parents))
	for i, p := range parents {
		lowers[i] = fsDir(p)
	}
	opts = append(opts, "lowerdir="+strings.Join(lowers, ":"))
	return []mount.Mount{{Type: "overlay", Source: "overlay", Options: opts}}
}

func (d driver) Usage(dir string) (snapshots.Usage, error) {
	return fsstore.DiskUsage(fsDir(dir))
}
