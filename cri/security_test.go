package cri

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/oci"
)

// securityRoot returns a root filesystem whose /etc/passwd has user u
// (1000:1000) and whose /etc/group lists u in group img (50000).
func securityRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{
		"passwd": "root:x:0:0:root:/root:/bin/sh\nu:x:1000:1000::/home/u:/bin/sh\n",
		"group":  "root:x:0:\nu:x:1000:\nimg:x:50000:u\n",
	} {
		if err := os.WriteFile(filepath.Join(root, "etc", name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func testServer() *Server {
	return &Server{log: slog.New(slog.NewTextHandler(io.Discard, nil)), containers: map[string]*container{}}
}

func testSandbox(privileged bool) *sandbox {
	return &sandbox{
		rec: sandboxRecord{ID: "sb1"},
		config: &runtimeapi.PodSandboxConfig{Linux: &runtimeapi.LinuxPodSandboxConfig{
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{Privileged: privileged},
		}},
	}
}

// containerSecuritySpec builds a default spec in root with the options
// of sc for a container of sb.
func containerSecuritySpec(t *testing.T, root string, sb *sandbox, sc *runtimeapi.LinuxContainerSecurityContext) (*specs.Spec, error) {
	t.Helper()
	opts, err := testServer().containerSecurityOpts(sc, sb)
	if err != nil {
		return nil, err
	}
	return oci.GenerateSpec(context.Background(), "k8s.io", "c1", append([]oci.SpecOpts{oci.WithRootFSPath(root)}, opts...)...)
}

func allows(sc *specs.LinuxSeccomp, syscall string) bool {
	return slices.ContainsFunc(sc.Syscalls, func(s specs.LinuxSyscall) bool {
		return s.Action == specs.ActAllow && len(s.Args) == 0 && slices.Contains(s.Names, syscall)
	})
}

func TestContainerSecurityUser(t *testing.T) {
	root := securityRoot(t)
	uid := func(v int64) *runtimeapi.Int64Value { return &runtimeapi.Int64Value{Value: v} }
	for _, tc := range []struct {
		name     string
		sc       *runtimeapi.LinuxContainerSecurityContext
		user     specs.User
		errClass func(error) bool
	}{
		{"none", nil, specs.User{}, nil},
		{"uid with the image's groups and supplemental ones",
			&runtimeapi.LinuxContainerSecurityContext{RunAsUser: uid(1000), SupplementalGroups: []int64{1234}},
			specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{50000, 1234}}, nil},
		{"strict: only the supplemental groups",
			&runtimeapi.LinuxContainerSecurityContext{RunAsUser: uid(1000), SupplementalGroups: []int64{1234}, SupplementalGroupsPolicy: runtimeapi.SupplementalGroupsPolicy_Strict},
			specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1234}}, nil},
		{"uid and group", &runtimeapi.LinuxContainerSecurityContext{RunAsUser: uid(1000), RunAsGroup: uid(7)},
			specs.User{UID: 1000, GID: 7, AdditionalGids: []uint32{50000}}, nil},
		{"uid unknown to the image", &runtimeapi.LinuxContainerSecurityContext{RunAsUser: uid(4321)}, specs.User{UID: 4321}, nil},
		{"name", &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: "u"}, specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{50000}}, nil},
		{"unknown name", &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: "nobody"}, specs.User{}, errdefs.IsNotFound},
		{"name with a group", &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: "u:root"}, specs.User{}, errdefs.IsInvalidArgument},
		{"group alone", &runtimeapi.LinuxContainerSecurityContext{RunAsGroup: uid(1)}, specs.User{}, errdefs.IsInvalidArgument},
		{"negative uid", &runtimeapi.LinuxContainerSecurityContext{RunAsUser: uid(-1)}, specs.User{}, errdefs.IsInvalidArgument},
		{"gid past 32 bits", &runtimeapi.LinuxContainerSecurityContext{RunAsUser: uid(0), SupplementalGroups: []int64{1 << 32}}, specs.User{}, errdefs.IsInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := containerSecuritySpec(t, root, testSandbox(false), tc.sc)
			if tc.errClass != nil {
				if !tc.errClass(err) {
					t.Fatalf("error %v, want another class", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := s.Process.User
			if got.UID != tc.user.UID || got.GID != tc.user.GID || !slices.Equal(got.AdditionalGids, tc.user.AdditionalGids) {
				t.Errorf("user %+v, want %+v", got, tc.user)
			}
		})
	}
}

func TestContainerSecurityPrivileges(t *testing.T) {
	root := securityRoot(t)
	held, err := oci.CurrentCapabilities()
	if err != nil {
		t.Fatal(err)
	}
	profile := filepath.Join(t.TempDir(), "p.json")
	if err := os.WriteFile(profile, []byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["chmod"],"action":"SCMP_ACT_ERRNO"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}

	s, err := containerSecuritySpec(t, root, testSandbox(false), nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Linux.Seccomp != nil || !slices.Equal(s.Linux.MaskedPaths, oci.DefaultMaskedPaths()) || !slices.Equal(s.Linux.ReadonlyPaths, oci.DefaultReadonlyPaths()) || s.Process.NoNewPrivileges || slices.Contains(s.Process.Capabilities.Bounding, "CAP_SYS_ADMIN") {
		t.Errorf("no security context: seccomp %v, masked %v, read-only %v, nnp %v, caps %v", s.Linux.Seccomp, s.Linux.MaskedPaths, s.Linux.ReadonlyPaths, s.Process.NoNewPrivileges, s.Process.Capabilities.Bounding)
	}

	s, err = containerSecuritySpec(t, root, testSandbox(false), &runtimeapi.LinuxContainerSecurityContext{
		Capabilities:   &runtimeapi.Capability{AddCapabilities: []string{"net_admin"}, DropCapabilities: []string{"KILL"}},
		MaskedPaths:    []string{"/proc/x"},
		ReadonlyPaths:  []string{"/proc/y"},
		NoNewPrivs:     true,
		ReadonlyRootfs: true,
		Seccomp:        &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, set := range [][]string{s.Process.Capabilities.Bounding, s.Process.Capabilities.Effective, s.Process.Capabilities.Permitted} {
		if !slices.Contains(set, "CAP_NET_ADMIN") || slices.Contains(set, "CAP_KILL") {
			t.Errorf("add NET_ADMIN, drop KILL: %v", set)
		}
	}
	if !slices.Equal(s.Linux.MaskedPaths, []string{"/proc/x"}) || !slices.Equal(s.Linux.ReadonlyPaths, []string{"/proc/y"}) || !s.Process.NoNewPrivileges || !s.Root.Readonly {
		t.Errorf("masked %v, read-only %v, nnp %v, read-only root %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths, s.Process.NoNewPrivileges, s.Root.Readonly)
	}
	if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction == specs.ActAllow || !allows(s.Linux.Seccomp, "read") || allows(s.Linux.Seccomp, "mount") {
		t.Errorf("runtime/default is berth's allowlist, without mount: %+v", s.Linux.Seccomp)
	}

	// The default profile is fitted to the capabilities added before it.
	s, err = containerSecuritySpec(t, root, testSandbox(false), &runtimeapi.LinuxContainerSecurityContext{
		Capabilities:       &runtimeapi.Capability{AddCapabilities: []string{"SYS_ADMIN"}},
		SeccompProfilePath: "runtime/default",
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.Linux.Seccomp == nil || !allows(s.Linux.Seccomp, "mount") {
		t.Errorf("runtime/default with CAP_SYS_ADMIN does not allow mount")
	}

	s, err = containerSecuritySpec(t, root, testSandbox(false), &runtimeapi.LinuxContainerSecurityContext{
		Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"ALL"}},
		Seccomp:      &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: profile},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Process.Capabilities.Bounding, held) {
		t.Errorf("add ALL: %v, want berthd's own %v", s.Process.Capabilities.Bounding, held)
	}
	if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActAllow || len(s.Linux.Seccomp.Syscalls) != 1 {
		t.Errorf("localhost profile: %+v", s.Linux.Seccomp)
	}
	for _, path := range []string{"", "unconfined"} {
		s, err = containerSecuritySpec(t, root, testSandbox(false), &runtimeapi.LinuxContainerSecurityContext{SeccompProfilePath: path})
		if err != nil || s.Linux.Seccomp != nil {
			t.Errorf("seccomp_profile_path %q: %v, profile %v", path, err, s.Linux.Seccomp)
		}
	}
	s, err = containerSecuritySpec(t, root, testSandbox(false), &runtimeapi.LinuxContainerSecurityContext{SeccompProfilePath: "localhost/" + profile})
	if err != nil || s.Linux.Seccomp == nil || len(s.Linux.Seccomp.Syscalls) != 1 {
		t.Errorf("seccomp_profile_path localhost/: %v, profile %v", err, s.Linux.Seccomp)
	}

	privileged := &runtimeapi.LinuxContainerSecurityContext{
		Privileged:   true,
		Capabilities: &runtimeapi.Capability{DropCapabilities: []string{"ALL"}},
		MaskedPaths:  []string{"/proc/x"},
		Seccomp:      &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: profile},
	}
	if _, err := containerSecuritySpec(t, root, testSandbox(false), privileged); !errdefs.IsInvalidArgument(err) {
		t.Errorf("privileged container in a pod that is not: %v", err)
	}
	s, err = containerSecuritySpec(t, root, testSandbox(true), privileged)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Process.Capabilities.Bounding, held) || s.Linux.MaskedPaths != nil || s.Linux.ReadonlyPaths != nil || s.Linux.Seccomp != nil || len(s.Linux.Devices) == 0 {
		t.Errorf("privileged: caps %v, masked %v, read-only %v, seccomp %v, %d devices", s.Process.Capabilities.Bounding, s.Linux.MaskedPaths, s.Linux.ReadonlyPaths, s.Linux.Seccomp, len(s.Linux.Devices))
	}

	for name, sc := range map[string]*runtimeapi.LinuxContainerSecurityContext{
		"unknown capability":  {Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"CAP_NOT_A_CAP"}}},
		"bad seccomp path":    {SeccompProfilePath: "somewhere/p.json"},
		"relative localhost":  {SeccompProfilePath: "localhost/p.json"},
		"relative masked":     {MaskedPaths: []string{"proc/x"}},
		"bad apparmor name":   {ApparmorProfile: "mine"},
		"selinux with colons": {SelinuxOptions: &runtimeapi.SELinuxOption{Type: "a:b"}},
	} {
		if _, err := containerSecuritySpec(t, root, testSandbox(false), sc); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: %v, want an invalid argument", name, err)
		}
	}
	// AppArmor is left to the host: runtime/default sets no profile of
	// berth's; a named one fails where the host has no AppArmor.
	s, err = containerSecuritySpec(t, root, testSandbox(false), &runtimeapi.LinuxContainerSecurityContext{Apparmor: &runtimeapi.SecurityProfile{}})
	if err != nil || s.Process.ApparmorProfile != "" {
		t.Errorf("apparmor runtime/default: %v, profile %q", err, s.Process.ApparmorProfile)
	}
	if !oci.AppArmorEnabled() {
		_, err := containerSecuritySpec(t, root, testSandbox(false), &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "localhost/mine"})
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("apparmor localhost profile on a host without AppArmor: %v", err)
		}
	}
}

func TestSandboxSecurity(t *testing.T) {
	gen := func(sc *runtimeapi.LinuxSandboxSecurityContext) *specs.Spec {
		t.Helper()
		opts, err := sandboxSecurityOpts(sc)
		if err != nil {
			t.Fatal(err)
		}
		s, err := oci.GenerateSpec(context.Background(), "k8s.io", "sb1", append([]oci.SpecOpts{oci.WithRootFSPath(t.TempDir())}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := gen(&runtimeapi.LinuxSandboxSecurityContext{RunAsGroup: &runtimeapi.Int64Value{Value: 5}, ReadonlyRootfs: true, SupplementalGroups: []int64{9}})
	if s.Process.User.UID != 0 || s.Process.User.GID != 5 || !slices.Equal(s.Process.User.AdditionalGids, []uint32{9}) || !s.Root.Readonly || !s.Process.NoNewPrivileges || s.Linux.Seccomp != nil {
		t.Errorf("sandbox: user %+v, read-only %v, nnp %v, seccomp %v", s.Process.User, s.Root.Readonly, s.Process.NoNewPrivileges, s.Linux.Seccomp)
	}
	s = gen(&runtimeapi.LinuxSandboxSecurityContext{Privileged: true, Seccomp: &runtimeapi.SecurityProfile{}})
	if s.Linux.Seccomp != nil || s.Linux.MaskedPaths != nil || s.Linux.Resources.Devices[0].Allow != true {
		t.Errorf("privileged sandbox: seccomp %v, masked %v, devices %v", s.Linux.Seccomp, s.Linux.MaskedPaths, s.Linux.Resources.Devices)
	}
	if s = gen(&runtimeapi.LinuxSandboxSecurityContext{SeccompProfilePath: "runtime/default"}); s.Linux.Seccomp == nil {
		t.Errorf("sandbox runtime/default: no profile")
	}
}

func TestOOMScoreAdj(t *testing.T) {
	_, own, err := oci.ClampOOMScoreAdj(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, adj := range []int64{-1000, int64(own), 1000} {
		s, err := oci.GenerateSpec(context.Background(), "k8s.io", "c1", testServer().withOOMScoreAdj("c1", &runtimeapi.LinuxContainerResources{OomScoreAdj: adj}))
		if err != nil {
			t.Fatal(err)
		}
		if want := max(int(adj), own); s.Process.OOMScoreAdj == nil || *s.Process.OOMScoreAdj != want {
			t.Errorf("oom_score_adj %d with berthd's own %d: %v, want %d", adj, own, s.Process.OOMScoreAdj, want)
		}
	}
	if _, err := oci.GenerateSpec(context.Background(), "k8s.io", "c1", testServer().withOOMScoreAdj("c1", &runtimeapi.LinuxContainerResources{OomScoreAdj: 1001})); !errdefs.IsInvalidArgument(err) {
		t.Errorf("oom_score_adj 1001: %v", err)
	}
}

func TestPodNamespaces(t *testing.T) {
	s := testServer()
	sb := testSandbox(false)
	sb.rec.NetNS = "/run/netns/x"
	for _, tc := range []struct {
		ns   *runtimeapi.NamespaceOption
		want specs.LinuxNamespace
	}{
		{nil, specs.LinuxNamespace{Type: specs.PIDNamespace, Path: "/proc/42/ns/pid"}},
		{&runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}, specs.LinuxNamespace{Type: specs.PIDNamespace}},
	} {
		opts, err := s.podNamespaceOpts(context.Background(), sb, 42, tc.ns)
		if err != nil {
			t.Fatal(err)
		}
		spec, err := oci.GenerateSpec(context.Background(), "k8s.io", "c1", opts...)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(spec.Linux.Namespaces, tc.want) || !slices.Contains(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: "/run/netns/x"}) {
			t.Errorf("%v: %v", tc.ns, spec.Linux.Namespaces)
		}
	}
	if _, err := s.podNamespaceOpts(context.Background(), sb, 42, &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("TARGET without a target: %v", err)
	}
	if _, err := s.podNamespaceOpts(context.Background(), sb, 42, &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "nope"}); !errdefs.IsNotFound(err) {
		t.Errorf("TARGET of an unknown container: %v", err)
	}
}
