package oci

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthrt/berth/errdefs"
)

func generate(t *testing.T, opts ...SpecOpts) *specs.Spec {
	t.Helper()
	s, err := GenerateSpec(context.Background(), "ci", "redis-1", opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func destinations(s *specs.Spec) []string {
	var d []string
	for _, m := range s.Mounts {
		d = append(d, m.Destination)
	}
	return d
}

func namespaceTypes(s *specs.Spec) []specs.LinuxNamespaceType {
	var ns []specs.LinuxNamespaceType
	for _, n := range s.Linux.Namespaces {
		ns = append(ns, n.Type)
	}
	return ns
}

func TestGenerateSpecDefaults(t *testing.T) {
	s := generate(t)

	checks := []struct {
		name string
		ok   bool
	}{
		{"version", s.Version == specs.Version},
		{"args", slices.Equal(s.Process.Args, []string{"sh"})},
		{"cwd", s.Process.Cwd == "/"},
		{"env", slices.Equal(s.Process.Env, []string{defaultPATH})},
		{"user", s.Process.User.UID == 0 && s.Process.User.GID == 0},
		{"no new privileges", !s.Process.NoNewPrivileges},
		{"terminal", !s.Process.Terminal},
		{"capabilities", len(s.Process.Capabilities.Bounding) == 14 &&
			slices.Equal(s.Process.Capabilities.Bounding, s.Process.Capabilities.Effective) &&
			slices.Equal(s.Process.Capabilities.Bounding, s.Process.Capabilities.Permitted) &&
			slices.Contains(s.Process.Capabilities.Bounding, "CAP_AUDIT_WRITE") &&
			s.Process.Capabilities.Inheritable == nil},
		{"rlimit", len(s.Process.Rlimits) == 1 && s.Process.Rlimits[0] == specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
		{"root", s.Root.Path == "rootfs" && !s.Root.Readonly},
		{"hostname", s.Hostname == "redis-1"},
		{"mounts", slices.Equal(destinations(s), []string{"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"})},
		{"sys read-only", slices.Contains(s.Mounts[5].Options, "ro") && s.Mounts[5].Type == "sysfs"},
		{"cgroup read-only", slices.Contains(s.Mounts[6].Options, "ro") && s.Mounts[6].Type == "cgroup"},
		{"namespaces", slices.Equal(namespaceTypes(s), []specs.LinuxNamespaceType{"pid", "ipc", "uts", "mount", "network"})},
		{"cgroups path", s.Linux.CgroupsPath == "/berth/ci/redis-1"},
		{"masked", slices.Contains(s.Linux.MaskedPaths, "/proc/kcore") && slices.Contains(s.Linux.MaskedPaths, "/sys/firmware")},
		{"read-only paths", slices.Equal(s.Linux.ReadonlyPaths, []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"})},
		{"devices deny all first", !s.Linux.Resources.Devices[0].Allow && s.Linux.Resources.Devices[0].Type == "" && s.Linux.Resources.Devices[0].Access == "rwm"},
		{"devices pts any minor", s.Linux.Resources.Devices[8].Minor == nil && *s.Linux.Resources.Devices[8].Major == 136},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("default spec: %s is wrong", c.name)
		}
	}
	if _, err := json.Marshal(s); err != nil {
		t.Errorf("marshal: %v", err)
	}

	// Specs share nothing: changing one changes neither its other sets nor
	// the next spec.
	s.Process.Capabilities.Bounding[0] = "CAP_SYS_ADMIN"
	s.Mounts[0].Options[0] = "changed"
	if s.Process.Capabilities.Effective[0] != "CAP_CHOWN" {
		t.Error("capability sets share an array")
	}
	if next := generate(t); next.Process.Capabilities.Bounding[0] != "CAP_CHOWN" || next.Mounts[0].Options[0] != "nosuid" {
		t.Error("a spec shares state with the next one")
	}
}

func TestSpecOpts(t *testing.T) {
	resolv := specs.Mount{Destination: "/etc/resolv.conf", Type: "bind", Source: "/etc/resolv.conf", Options: []string{"rbind", "ro"}}
	tests := []struct {
		name  string
		opts  []SpecOpts
		check func(s *specs.Spec) bool
	}{
		{"args", []SpecOpts{WithProcessArgs("redis-server", "--port", "6380")},
			func(s *specs.Spec) bool {
				return slices.Equal(s.Process.Args, []string{"redis-server", "--port", "6380"})
			}},
		{"env replaces and appends", []SpecOpts{WithEnv([]string{"A=1", "PATH=/bin"}), WithEnv([]string{"A=2", "B=x=y"})},
			func(s *specs.Spec) bool { return slices.Equal(s.Process.Env, []string{"PATH=/bin", "A=2", "B=x=y"}) }},
		{"cwd", []SpecOpts{WithProcessCwd("/data")},
			func(s *specs.Spec) bool { return s.Process.Cwd == "/data" }},
		{"tty", []SpecOpts{WithTTY},
			func(s *specs.Spec) bool { return s.Process.Terminal && slices.Contains(s.Process.Env, "TERM=xterm") }},
		{"tty keeps TERM", []SpecOpts{WithEnv([]string{"TERM=vt100"}), WithTTY},
			func(s *specs.Spec) bool { return !slices.Contains(s.Process.Env, "TERM=xterm") }},
		{"rootfs", []SpecOpts{WithRootFSPath("/run/berth/ci/x/rootfs"), WithRootFSReadonly},
			func(s *specs.Spec) bool { return s.Root.Path == "/run/berth/ci/x/rootfs" && s.Root.Readonly }},
		{"hostname", []SpecOpts{WithHostname("cache")},
			func(s *specs.Spec) bool { return s.Hostname == "cache" }},
		{"host pid", []SpecOpts{WithHostNamespace(specs.PIDNamespace)},
			func(s *specs.Spec) bool {
				return slices.Equal(namespaceTypes(s), []specs.LinuxNamespaceType{"ipc", "uts", "mount", "network"}) && len(s.Mounts) == 7
			}},
		{"host network", []SpecOpts{WithHostNamespace(specs.NetworkNamespace)},
			func(s *specs.Spec) bool {
				return !slices.Contains(namespaceTypes(s), specs.NetworkNamespace) &&
					slices.Equal(destinations(s)[7:], []string{"/etc/resolv.conf", "/etc/hosts"}) &&
					slices.Contains(s.Mounts[7].Options, "ro") && slices.Contains(s.Mounts[8].Options, "ro")
			}},
		{"host network keeps a given resolv.conf", []SpecOpts{
			WithMounts([]specs.Mount{{Destination: "/etc/resolv.conf", Type: "bind", Source: "/tmp/r"}}),
			WithHostNamespace(specs.NetworkNamespace)},
			func(s *specs.Spec) bool { return s.Mounts[7].Source == "/tmp/r" && len(s.Mounts) == 9 }},
		{"mounts append and replace", []SpecOpts{WithMounts([]specs.Mount{
			resolv,
			{Destination: "/dev/shm/", Type: "tmpfs", Source: "shm", Options: []string{"size=1g"}},
		})},
			func(s *specs.Spec) bool {
				return len(s.Mounts) == 8 && s.Mounts[3].Options[0] == "size=1g" && s.Mounts[7].Destination == "/etc/resolv.conf"
			}},
		{"uid gid", []SpecOpts{WithUIDGID(1000, 100)},
			func(s *specs.Spec) bool { return s.Process.User.UID == 1000 && s.Process.User.GID == 100 }},
		{"memory", []SpecOpts{WithMemoryLimit(256 << 20)},
			func(s *specs.Spec) bool { return *s.Linux.Resources.Memory.Limit == 256<<20 }},
		{"cpus 1.5", []SpecOpts{WithCPUs(1.5)},
			func(s *specs.Spec) bool {
				return *s.Linux.Resources.CPU.Quota == 150000 && *s.Linux.Resources.CPU.Period == 100000
			}},
		{"cpus 0.25", []SpecOpts{WithCPUs(0.25)},
			func(s *specs.Spec) bool { return *s.Linux.Resources.CPU.Quota == 25000 }},
		{"pids", []SpecOpts{WithPidsLimit(64)},
			func(s *specs.Spec) bool { return *s.Linux.Resources.Pids.Limit == 64 }},
		{"no new privileges", []SpecOpts{WithNoNewPrivileges},
			func(s *specs.Spec) bool { return s.Process.NoNewPrivileges }},
		{"annotations merge", []SpecOpts{
			WithAnnotations(map[string]string{"a": "1", "b": "1"}),
			WithAnnotations(map[string]string{"b": "2"})},
			func(s *specs.Spec) bool { return s.Annotations["a"] == "1" && s.Annotations["b"] == "2" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := generate(t, tt.opts...)
			if !tt.check(s) {
				b, _ := json.MarshalIndent(s, "", "  ")
				t.Errorf("spec not as expected:\n%s", b)
			}
		})
	}
}

func TestSpecOptsInvalid(t *testing.T) {
	tests := []struct {
		name string
		opt  SpecOpts
		want string // in the error message
	}{
		{"no args", WithProcessArgs(), "process args"},
		{"empty program", WithProcessArgs("", "x"), "process args"},
		{"env without =", WithEnv([]string{"A=1", "B"}), `env "B"`},
		{"env empty key", WithEnv([]string{"=1"}), `env "=1"`},
		{"relative cwd", WithProcessCwd("data"), `cwd "data"`},
		{"empty rootfs", WithRootFSPath(""), "rootfs path"},
		{"empty hostname", WithHostname(""), "hostname"},
		{"long hostname", WithHostname(strings.Repeat("h", 65)), "hostname"},
		{"unknown namespace", WithHostNamespace("nope"), `namespace type "nope"`},
		{"relative mount", WithMounts([]specs.Mount{{Destination: "data"}}), `mount destination "data"`},
		{"zero memory", WithMemoryLimit(0), "memory limit 0"},
		{"cpus zero", WithCPUs(0), "cpus 0"},
		{"cpus negative", WithCPUs(-1), "cpus -1"},
		{"cpus too few", WithCPUs(0.001), "cpus 0.001"},
		{"cpus huge", WithCPUs(1e300), "cpus 1e+300"},
		{"pids zero", WithPidsLimit(0), "pids limit 0"},
		{"empty annotation key", WithAnnotations(map[string]string{"": "x"}), "annotation key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := GenerateSpec(context.Background(), "ci", "x", tt.opt)
			if err == nil {
				t.Fatal("no error")
			}
			if s != nil {
				t.Error("a spec returned with an error")
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("error %v is not ErrInvalidArgument", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name %q", err, tt.want)
			}
		})
	}
}

func TestGenerateSpecInvalidIDs(t *testing.T) {
	tests := []struct{ namespace, id string }{
		{"", "x"}, {"ci", ""}, {"ci", ".."}, {"..", "x"}, {"ci", "a/b"}, {"c/i", "x"},
	}
	for _, tt := range tests {
		_, err := GenerateSpec(context.Background(), tt.namespace, tt.id)
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("GenerateSpec(%q, %q) = %v, want ErrInvalidArgument", tt.namespace, tt.id, err)
		}
	}
}

func TestGenerateSpecLongIDHostname(t *testing.T) {
	id := strings.Repeat("a", 76)
	s, err := GenerateSpec(context.Background(), "ci", id)
	if err != nil {
		t.Fatal(err)
	}
	if s.Hostname != id[:64] || s.Linux.CgroupsPath != "/berth/ci/"+id {
		t.Errorf("hostname %q, cgroups path %q", s.Hostname, s.Linux.CgroupsPath)
	}
}

// Options must work on a spec built elsewhere, with no sections at all.
func TestSpecOptsOnEmptySpec(t *testing.T) {
	opts := []SpecOpts{
		WithProcessArgs("true"), WithEnv([]string{"A=1"}), WithProcessCwd("/"), WithTTY,
		WithRootFSPath("rootfs"), WithRootFSReadonly, WithHostname("h"),
		WithHostNamespace(specs.NetworkNamespace), WithMounts([]specs.Mount{{Destination: "/x"}}),
		WithUIDGID(1, 1), WithMemoryLimit(1 << 20), WithCPUs(1), WithPidsLimit(1),
		WithNoNewPrivileges, WithAnnotations(map[string]string{"k": "v"}),
	}
	s := &specs.Spec{}
	for i, o := range opts {
		if err := o(context.Background(), s); err != nil {
			t.Errorf("option %d: %v", i, err)
		}
	}
}
