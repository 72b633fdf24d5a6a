// Package containerd configures Debian's containerd for the benchmarks
// (its own root, state and socket, and the plugins that only add noise
// turned off) and sweeps what its shims leave under /run/containerd.
package containerd

import (
	"fmt"
	"strings"
)

// disabledPlugins are containerd plugins the benchmark turns off: CRI
// (berth has no CRI; with it containerd holds more memory and starts
// slower), opt (it would make /opt/containerd) and the snapshotters that
// cannot work on this host (their failures only add noise to the log).
// `ctr run --rootfs` needs no snapshotter.
var disabledPlugins = []string{
	"io.containerd.grpc.v1.cri",
	"io.containerd.internal.v1.opt",
	"io.containerd.snapshotter.v1.aufs",
	"io.containerd.snapshotter.v1.btrfs",
	"io.containerd.snapshotter.v1.devmapper",
	"io.containerd.snapshotter.v1.zfs",
}

// FromDefault overrides root, state, disabled_plugins (top level) and
// grpc.address in containerd's default config, line by line: the default
// config is TOML whose top-level keys come before the first table.
func FromDefault(def, root, state, address string) (string, error) {
	quoted := make([]string, len(disabledPlugins))
	for i, p := range disabledPlugins {
		quoted[i] = fmt.Sprintf("%q", p)
	}
	want := map[string]string{
		".root":             fmt.Sprintf("root = %q", root),
		".state":            fmt.Sprintf("state = %q", state),
		".disabled_plugins": "disabled_plugins = [" + strings.Join(quoted, ", ") + "]",
		"grpc.address":      fmt.Sprintf("  address = %q", address),
	}
	table := ""
	lines := strings.Split(def, "\n")
	for i, line := range lines {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "[") {
			table = strings.Trim(t, "[]")
			continue
		}
		key, _, ok := strings.Cut(t, " = ")
		if !ok {
			continue
		}
		if repl, ok := want[table+"."+key]; ok {
			lines[i] = repl
			delete(want, table+"."+key)
		}
	}
	if len(want) > 0 {
		return "", fmt.Errorf("containerd config default: keys not found: %v", want)
	}
	return strings.Join(lines, "\n"), nil
}
