package native

import (
	"os"
	"path/filepath"

	"github.com/berthrt/berth/mount"
	"github.com/berthrt/berth/snapshots"
	"github.com/berthrt/berth/storage/snapshots/internal/fsstore"
)

// Name is the snapshotter's name, in lease resources and GC labels.
const Name = "native"

// New opens the native snapshotter whose files live in root, an absolute
// path; see the package documentation.
func New(root string) (snapshots.Snapshotter, error) {
	return fsstore.New(Name, root, driver{})
}

// CheckFolders lists, read-only, the folders under root that no snapshot
// names and the snapshots whose folder is gone; see fsstore.CheckFolders.
func CheckFolders(root string) (unknown, missing []string, err error) {
	return fsstore.CheckFolders(root)
}

type driver struct{}

func fsDir(dir string) string { return filepath.Join(dir, "fs") }

func (driver) Create(dir string, _ snapshots.Kind, parents []string) error {
	if len(parents) == 0 {
		return os.Mkdir(fsDir(dir), 0o755)
	}
	return CopyTree(fsDir(dir), fsDir(parents[0]))
}

func (driver) Mounts(dir string, kind snapshots.Kind, _ []string) []mount.Mount {
	mode := "rw"
	if kind == snapshots.KindView {
		mode = "ro"
	}
	return []mount.Mount{{Type: "bind", Source: fsDir(dir), Options: []string{"rbind", mode}}}
}

func (driver) Usage(dir string) (snapshots.Usage, error) {
	return fsstore.DiskUsage(fsDir(dir))
}
