package oci

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthrt/berth/errdefs"
)

func TestWithCapabilities(t *testing.T) {
	current, err := CurrentCapabilities()
	if err != nil || !slices.Contains(current, "CAP_CHOWN") {
		t.Fatalf("current capabilities %v: %v", current, err)
	}
	tests := []struct {
		name      string
		add, drop []string
		has, not  []string
		wantLen   int // of each set; -1: not checked
	}{
		{"drop one", nil, []string{"NET_RAW"}, []string{"CAP_CHOWN"}, []string{"CAP_NET_RAW"}, 13},
		{"add one", []string{"sys_admin"}, nil, []string{"CAP_SYS_ADMIN", "CAP_CHOWN"}, nil, 15},
		{"drop all add one", []string{"CAP_NET_BIND_SERVICE"}, []string{"ALL"}, []string{"CAP_NET_BIND_SERVICE"}, []string{"CAP_CHOWN"}, 1},
		{"add all", []string{"all"}, nil, []string{"CAP_SYS_ADMIN", "CAP_BPF"}, nil, len(current)},
		{"add twice", []string{"CHOWN", "chown"}, nil, []string{"CAP_CHOWN"}, nil, 14},
		{"drop all", nil, []string{"ALL"}, nil, []string{"CAP_CHOWN"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := generate(t, WithCapabilities(tt.add, tt.drop))
			c := s.Process.Capabilities
			for name, set := range map[string][]string{"bounding": c.Bounding, "effective": c.Effective, "permitted": c.Permitted} {
				if len(set) != tt.wantLen {
					t.Errorf("%s: %d capabilities %v, want %d", name, len(set), set, tt.wantLen)
				}
				for _, h := range tt.has {
					if !slices.Contains(set, h) {
						t.Errorf("%s lacks %s", name, h)
					}
				}
				for _, n := range tt.not {
					if slices.Contains(set, n) {
						t.Errorf("%s has %s", name, n)
					}
				}
			}
			if len(c.Ambient) != 0 || len(c.Inheritable) != 0 {
				t.Errorf("ambient %v inheritable %v, want none", c.Ambient, c.Inheritable)
			}
		})
	}
	if _, err = GenerateSpec(context.Background(), "ci", "x", WithCapabilities(nil, []string{"NET_RAWW"})); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "NET_RAWW") {
		t.Errorf("unknown capability: err %v, want invalid argument naming it", err)
	}
}

func TestWithPrivileged(t *testing.T) {
	current, err := CurrentCapabilities()
	if err != nil {
		t.Fatal(err)
	}
	s := generate(t, WithDefaultSeccomp, WithPrivileged)
	if !slices.Equal(s.Process.Capabilities.Bounding, current) || !slices.Equal(s.Process.Capabilities.Effective, current) {
		t.Errorf("capabilities %v, want all", s.Process.Capabilities.Bounding)
	}
	if s.Linux.MaskedPaths != nil || s.Linux.ReadonlyPaths != nil {
		t.Errorf("masked %v read-only %v, want none", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	if s.Linux.Seccomp != nil {
		t.Error("seccomp kept")
	}
	if d := s.Linux.Resources.Devices; len(d) != 1 || !d[0].Allow || d[0].Access != "rwm" || d[0].Major != nil {
		t.Errorf("device cgroup %+v, want allow all", d)
	}
	for _, m := range s.Mounts {
		if (m.Type == "sysfs" || m.Type == "cgroup") && (slices.Contains(m.Options, "ro") || !slices.Contains(m.Options, "rw")) {
			t.Errorf("%s options %v, want rw", m.Destination, m.Options)
		}
	}
}

func TestWithHostDevices(t *testing.T) {
	s := generate(t, WithHostDevices)
	i := slices.IndexFunc(s.Linux.Devices, func(d specs.LinuxDevice) bool { return d.Path == "/dev/null" })
	if i < 0 {
		t.Fatalf("no /dev/null among %d host devices", len(s.Linux.Devices))
	}
	if d := s.Linux.Devices[i]; d.Type != "c" || d.Major != 1 || d.Minor != 3 {
		t.Errorf("/dev/null %+v, want c 1:3", d)
	}
	for _, d := range s.Linux.Devices {
		if strings.HasPrefix(d.Path, "/dev/pts/") || d.Path == "/dev/console" {
			t.Errorf("host device %s added; the container has its own", d.Path)
		}
	}
}

func TestMaskedAndReadonlyPaths(t *testing.T) {
	s := generate(t, WithMaskedPaths([]string{"/proc/x"}), WithReadonlyPaths(nil))
	if !slices.Equal(s.Linux.MaskedPaths, []string{"/proc/x"}) || len(s.Linux.ReadonlyPaths) != 0 {
		t.Errorf("masked %v read-only %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	if d := generate(t); !slices.Equal(d.Linux.MaskedPaths, DefaultMaskedPaths()) || !slices.Equal(d.Linux.ReadonlyPaths, DefaultReadonlyPaths()) {
		t.Error("defaults differ from the default spec's")
	}
	if _, err := GenerateSpec(context.Background(), "ci", "x", WithMaskedPaths([]string{"proc/kcore"})); !errdefs.IsInvalidArgument(err) {
		t.Errorf("relative masked path: %v", err)
	}
}

func TestWithGroupsOptions(t *testing.T) {
	s := generate(t, WithUIDGID(1000, 1000), WithAdditionalGIDs(1000, 5, 6, 5), WithGID(7))
	if u := s.Process.User; u.UID != 1000 || u.GID != 7 || !slices.Equal(u.AdditionalGids, []uint32{5, 6}) {
		t.Errorf("user %+v", u)
	}
}

func TestWithOOMScoreAdj(t *testing.T) {
	_, own, err := ClampOOMScoreAdj(0)
	if err != nil {
		t.Fatal(err)
	}
	if own > -1000 {
		s := generate(t, WithOOMScoreAdj(-1000, true))
		if *s.Process.OOMScoreAdj != own {
			t.Errorf("restricted -1000: %d, want own %d", *s.Process.OOMScoreAdj, own)
		}
	}
	if own < 1000 {
		s := generate(t, WithOOMScoreAdj(1000, true))
		if *s.Process.OOMScoreAdj != 1000 {
			t.Errorf("restricted 1000: %d, want 1000", *s.Process.OOMScoreAdj)
		}
	}
	if s := generate(t, WithOOMScoreAdj(-1000, false)); *s.Process.OOMScoreAdj != -1000 {
		t.Errorf("unrestricted: %d", *s.Process.OOMScoreAdj)
	}
	if _, err := GenerateSpec(context.Background(), "ci", "x", WithOOMScoreAdj(1001, true)); !errdefs.IsInvalidArgument(err) {
		t.Errorf("1001: %v", err)
	}
}

func TestWithLinuxNamespace(t *testing.T) {
	s := generate(t, WithLinuxNamespace(specs.NetworkNamespace, "/run/netns/x"), WithLinuxNamespace(specs.CgroupNamespace, ""))
	if i := slices.Index(namespaceTypes(s), specs.NetworkNamespace); i < 0 || s.Linux.Namespaces[i].Path != "/run/netns/x" {
		t.Errorf("network namespace %+v", s.Linux.Namespaces)
	}
	if n := namespaceTypes(s); len(n) != 6 || n[5] != specs.CgroupNamespace {
		t.Errorf("namespaces %v, want cgroup appended", n)
	}
	for _, o := range []SpecOpts{WithLinuxNamespace("bogus", ""), WithLinuxNamespace(specs.PIDNamespace, "proc/1/ns/pid")} {
		if _, err := GenerateSpec(context.Background(), "ci", "x", o); !errdefs.IsInvalidArgument(err) {
			t.Errorf("bad namespace: %v", err)
		}
	}
}

func TestSELinuxAndAppArmorLeftToHost(t *testing.T) {
	s := generate(t, WithSELinuxLabel("system_u:system_r:container_t:s0:c1,c2", "system_u:object_r:container_file_t:s0:c1,c2"))
	if SELinuxEnabled() != (s.Process.SelinuxLabel != "") {
		t.Errorf("SELinux enabled %v, label %q", SELinuxEnabled(), s.Process.SelinuxLabel)
	}
	_, err := GenerateSpec(context.Background(), "ci", "x", WithApparmorProfile("my-profile"))
	if AppArmorEnabled() != (err == nil) {
		t.Errorf("AppArmor enabled %v, named profile: %v", AppArmorEnabled(), err)
	}
}

func TestDefaultSeccomp(t *testing.T) {
	allowed := func(sc *specs.LinuxSeccomp, name string) bool {
		for _, r := range sc.Syscalls {
			if r.Action == specs.ActAllow && len(r.Args) == 0 && slices.Contains(r.Names, name) {
				return true
			}
		}
		return false
	}
	s := generate(t, WithDefaultSeccomp)
	sc := s.Linux.Seccomp
	if sc.DefaultAction != specs.ActErrno || sc.DefaultErrnoRet == nil || *sc.DefaultErrnoRet != 1 {
		t.Errorf("default action %v %v, want EPERM", sc.DefaultAction, sc.DefaultErrnoRet)
	}
	for _, n := range []string{"read", "execve", "openat", "socket", "capset", "setuid", "rt_sigreturn", "wait4"} {
		if !allowed(sc, n) {
			t.Errorf("%s not allowed", n)
		}
	}
	for _, n := range []string{"mount", "unshare", "setns", "bpf", "ptrace", "keyctl", "io_uring_setup", "init_module", "clone"} {
		if allowed(sc, n) {
			t.Errorf("%s allowed without its capability", n)
		}
	}
	clone := slices.IndexFunc(sc.Syscalls, func(r specs.LinuxSyscall) bool { return slices.Equal(r.Names, []string{"clone"}) })
	if clone < 0 || sc.Syscalls[clone].Args[0].Op != specs.OpMaskedEqual || sc.Syscalls[clone].Args[0].Value&uint64(cloneNamespaceFlags) == 0 {
		t.Error("clone not allowed without namespace flags")
	}

	admin := generate(t, WithCapabilities([]string{"SYS_ADMIN", "SYS_PTRACE"}, nil), WithDefaultSeccomp).Linux.Seccomp
	for _, n := range []string{"mount", "unshare", "setns", "clone", "clone3", "bpf", "ptrace"} {
		if !allowed(admin, n) {
			t.Errorf("%s not allowed with CAP_SYS_ADMIN and CAP_SYS_PTRACE", n)
		}
	}
	if len(sc.Architectures) == 0 {
		t.Error("no architectures")
	}
}

func TestSeccompProfileFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	docker := write("docker.json", `{
		"defaultAction": "SCMP_ACT_ERRNO",
		"defaultErrnoRet": 1,
		"archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
		            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
		"syscalls": [
			{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "comment": "io"},
			{"name": "mount", "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
			{"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "excludes": {"caps": ["CAP_FOWNER"]}},
			{"names": ["getpid"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "2.6"}},
			{"names": ["futurecall"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.0"}}
		]}`)
	s := generate(t, WithCapabilities(nil, []string{"FOWNER"}), WithSeccompProfileFile(docker))
	sc := s.Linux.Seccomp
	var names []string
	for _, r := range sc.Syscalls {
		names = append(names, r.Names...)
	}
	if !slices.Equal(names, []string{"read", "write", "chmod", "getpid"}) {
		t.Errorf("syscalls %v, want read write chmod getpid", names)
	}
	if sc.Syscalls[1].ErrnoRet == nil || *sc.Syscalls[1].ErrnoRet != 13 {
		t.Errorf("chmod errno %v", sc.Syscalls[1].ErrnoRet)
	}
	if len(sc.Architectures) != 2 {
		t.Errorf("architectures %v, want the native one and its sub-architecture", sc.Architectures)
	}

	oci := write("oci.json", `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["sethostname"], "action": "SCMP_ACT_ERRNO"}]}`)
	if sc := generate(t, WithSeccompProfileFile(oci)).Linux.Seccomp; sc.DefaultAction != specs.ActAllow || sc.Syscalls[0].Names[0] != "sethostname" {
		t.Errorf("oci profile %+v", sc)
	}

	bad := []struct {
		name, content, want string
	}{
		{"not json", `defaultAction: allow`, "not a seccomp profile"},
		{"no default", `{"syscalls": []}`, "defaultAction is missing"},
		{"bad default", `{"defaultAction": "SCMP_ACT_MAYBE"}`, `"SCMP_ACT_MAYBE": unknown`},
		{"bad action", `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "nope"}]}`, `syscalls[0] (read): action "nope"`},
		{"bad op", `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_SOMETIMES"}]}]}`, `op "SCMP_CMP_SOMETIMES"`},
		{"no names", `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ERRNO"}]}`, "names is empty"},
		{"agent", `{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"}`, "seccomp agent"},
		{"trailing", `{"defaultAction": "SCMP_ACT_ALLOW"} {}`, "data after"},
	}
	for _, b := range bad {
		p := write(strings.ReplaceAll(b.name, " ", "-")+".json", b.content)
		_, err := GenerateSpec(context.Background(), "ci", "x", WithSeccompProfileFile(p))
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), b.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: err %v, want invalid argument naming the file and %q", b.name, err, b.want)
		}
	}

	big := write("big.json", `{"defaultAction": "SCMP_ACT_ALLOW", "x": "`+strings.Repeat("a", seccompProfileMax)+`"}`)
	if _, err := GenerateSpec(context.Background(), "ci", "x", WithSeccompProfileFile(big)); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("big profile: %v", err)
	}
	if _, err := GenerateSpec(context.Background(), "ci", "x", WithSeccompProfileFile(filepath.Join(dir, "absent.json"))); !errdefs.IsNotFound(err) {
		t.Errorf("absent profile: %v", err)
	}
	if _, err := GenerateSpec(context.Background(), "ci", "x", WithSeccompProfileFile("profile.json")); !errdefs.IsInvalidArgument(err) {
		t.Errorf("relative profile path: %v", err)
	}
	if _, err := GenerateSpec(context.Background(), "ci", "x", WithSeccompProfileFile(dir)); !errdefs.IsInvalidArgument(err) {
		t.Errorf("folder as profile: %v", err)
	}
}

func FuzzParseSeccompProfile(f *testing.F) {
	f.Add([]byte(`{"defaultAction": "SCMP_ACT_ERRNO", "archMap": [{"architecture": "SCMP_ARCH_X86_64"}], "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"], "minKernel": "4.8"}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		sc, err := ParseSeccompProfile(b, []string{"CAP_SYS_ADMIN"})
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("error of the wrong class: %v", err)
			}
			return
		}
		if sc.DefaultAction == "" {
			t.Error("no default action")
		}
	})
}
