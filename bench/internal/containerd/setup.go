package containerd

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/berthrt/berth/bench/internal/sweep"
)

// Run is the folder containerd 1.6 uses whatever its state folder: the
// shims' sockets (s/) and, by default, the shims' runc root
// (runc/<namespace>) and ctr's FIFOs (fifo/; a benchmark passes its own).
const Run = "/run/containerd"

// Setup is a containerd of a benchmark's own, configured and not started.
type Setup struct {
	Args    []string // the command line: the binary, --config and the file
	Version string   // what containerd --version says, "" when it did not

	runExisted bool // Run existed before the benchmark: leave it
}

// Configure writes to conf the config of bin (containerd) from its
// `config default`, with root, state and the socket address replaced
// (FromDefault), and notes whether Run exists already.
func Configure(bin, conf, root, state, address string) (*Setup, error) {
	def, err := exec.Command(bin, "config", "default").Output()
	if err != nil {
		return nil, fmt.Errorf("containerd config default: %w", err)
	}
	text, err := FromDefault(string(def), root, state, address)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return nil, err
	}
	s := &Setup{Args: []string{bin, "--config", conf}}
	if _, err := os.Stat(Run); err == nil {
		s.runExisted = true
	}
	if out, err := exec.Command(bin, "--version").Output(); err == nil {
		s.Version = strings.TrimSpace(string(out))
	}
	return s, nil
}

// Sweep removes, once the daemon has stopped, what its shims of namespace
// ns leave under Run: containers runc (runtime) still lists and shims still
// running, each an error (package sweep), the runc root of ns, and Run
// itself when it did not exist before and is empty.
func (s *Setup) Sweep(runtime, ns string) error {
	runcRoot := filepath.Join(Run, "runc", ns)
	errs := []error{sweep.Containers(runtime, runcRoot), sweep.Processes(ShimWords(ns)...), os.RemoveAll(runcRoot)}
	if !s.runExisted {
		sweep.EmptyDirs(Run) // keeps what is not empty: not ours
	}
	return errors.Join(errs...)
}

// ShimWords are in the command line of every containerd-shim-runc-v2 of
// namespace ns (proc.Matching).
func ShimWords(ns string) []string { return []string{"-namespace", ns} }
