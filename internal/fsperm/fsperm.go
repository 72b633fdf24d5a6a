// Package fsperm makes the folders berth keeps private, and keeps them
// so across upgrades.
//
// Invariant: after Restrict(path, perm) returns nil, path is a folder
// whose permission bits grant nothing that perm does not. A folder that
// exists already is tightened, never widened: an install made by an
// earlier release (or by hand) with looser modes is closed when the
// daemon starts, and a mode an administrator made stricter is kept.
package fsperm

import (
	"fmt"
	"io/fs"
	"os"
)

// Restrict makes path a folder of mode perm (with missing parents, also
// perm), or takes away from an existing one the bits perm lacks.
func Restrict(path string, perm fs.FileMode) error {
	if err := os.MkdirAll(path, perm); err != nil {
		return err
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s: not a folder", path)
	}
	mode := st.Mode() & (fs.ModePerm | fs.ModeSetgid | fs.ModeSticky)
	if tight := mode &^ (fs.ModePerm &^ perm); tight != mode {
		if err := os.Chmod(path, tight); err != nil {
			return fmt.Errorf("restrict %s to %v: %w", path, perm, err)
		}
	}
	return nil
}
