// Package atomicfile writes files that a crash leaves either whole or
// absent: the data goes to a temporary file beside the target, is synced,
// and is renamed over it; then the folder is synced so the rename itself
// survives a power failure.
//
// Readers of such a file never see a partial write. A crash may leave a
// temporary file (".<name>.tmp-*") beside the target; it is never read in
// place of the target.
package atomicfile

import (
	"os"
	"path/filepath"
)

// WriteFile writes data to a temporary file beside path, syncs it and
// renames it over path, then syncs the folder.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, true)
}

// WriteVolatile is WriteFile without the syncs, for a file in a folder
// that does not outlive the machine, such as the runtime state under /run
// (bundles, shim files, markers): what it records ends with the machine's
// processes. A crash of a process, the writer's or any other, still
// leaves the file whole or absent, since the page cache outlives
// processes and the rename is atomic; only a power failure may lose it,
// and with it what it described. The syncs cost a disk flush each where
// such a folder is not on tmpfs.
func WriteVolatile(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, false)
}

func write(path string, data []byte, perm os.FileMode, sync bool) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Chmod(perm); err != nil {
		return fail(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			return fail(err)
		}
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	if !sync {
		return nil
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
