package main

import (
	"os"
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

// TestBuildFlags keeps the Makefile's SHIM_BUILD making the small binary
// bench/README.md measured ("Where an idle shim's memory goes"): no code
// inlined, the runtime's included (0.36 MB), functions aligned to 16
// bytes (72 KB), stripped. Each byte of it is RSS in every shim.
func TestBuildFlags(t *testing.T) {
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for _, l := range strings.Split(string(mk), "\n") {
		if strings.HasPrefix(l, "SHIM_BUILD :=") {
			line = l
		}
	}
	if line == "" {
		t.Fatal("no SHIM_BUILD in the Makefile")
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w -funcalign=16"`, "-gcflags=all=-l"} {
		if !strings.Contains(line, want) {
			t.Errorf("SHIM_BUILD lacks %s: %s", want, line)
		}
	}
	if strings.Count(line, "-gcflags") != 1 {
		t.Errorf("SHIM_BUILD sets -gcflags more than once (a later pattern overrides -l for its packages): %s", line)
	}
}
