// Package berthd configures a berthd of a benchmark's own (its own root,
// state, socket, runtime and shim) and sweeps what its shims leave when a
// teardown through the daemon failed.
package berthd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/berthrt/berth/bench/internal/sweep"
)

// Config is what a benchmark sets in berthd's config file.
type Config struct {
	Root, State, Address string
	Runtime, Shim        string // binaries: runtime.default, runtime.shim
}

// Write writes c as berthd's config file at path.
func (c Config) Write(path string) error {
	text := fmt.Sprintf("version = 1\nroot = %q\nstate = %q\n\n[api]\naddress = %q\n\n[runtime]\ndefault = %q\nshim = %q\n",
		c.Root, c.State, c.Address, c.Runtime, c.Shim)
	return os.WriteFile(path, []byte(text), 0o644)
}

// ShimWords are in the command line of every berth-shim of namespace ns
// (proc.Matching).
func ShimWords(ns string) []string { return []string{"serve", "--namespace", ns} }

// Sweep removes, once berthd (runtime, state) has stopped, the containers
// of namespace ns that runc still lists and the shims still running, each
// an error (package sweep).
func Sweep(runtime, state, ns string) error {
	return errors.Join(sweep.Containers(runtime, filepath.Join(state, ".runc", ns)), sweep.Processes(ShimWords(ns)...))
}
