package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLightDeps keeps packages out of berth-shim that would cost every
// shim memory for nothing it needs: a shim maps nearly its whole binary,
// so each byte linked is RSS in each of them (bench/README.md, "Where an
// idle shim's memory goes"). log/slog was 0.1 MB of the binary (the shim
// logs through internal/jsonlog); containerd/cgroups linked eBPF, D-Bus and
// systemd (1.4 MB, package task/internal/cgroup); the HTTP and TLS stacks
// and the registry client belong to the daemon.
func TestLightDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{
		"log/slog",
		"github.com/containerd/cgroups",
		"github.com/cilium/ebpf",
		"github.com/godbus/dbus",
		"net/http",
		"crypto/tls",
		"github.com/berthrt/berth/distribution",
		"github.com/berthrt/berth/supervisor",
	}
	for _, p := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if p == f || strings.HasPrefix(p, f+"/") {
				t.Errorf("berth-shim links %s", p)
			}
		}
	}
}
