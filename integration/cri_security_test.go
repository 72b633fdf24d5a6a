package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/internal/testimage"
)

// TestCRISecurity checks the security contexts through a real berthd and
// runc: seccomp (runtime/default, localhost), masked paths, users and
// groups (with the image's groups for the user), run_as_group without a
// user, privileged (only in a privileged pod), the PID namespace modes,
// the OOM score clamp, and the OOMKilled reason.
func TestCRISecurity(t *testing.T) {
	e := newCRIEnv(t)
	ctx := e.ctx(t)
	// An image whose /etc/passwd has user u (1000) in group img (50000).
	users := e.reg.Addr + "/library/users:latest"
	entries, err := testimage.BusyboxEntries("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	img, err := testimage.Build(testimage.BusyboxConfig(), entries, []testimage.Entry{
		testimage.File("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nu:x:1000:1000::/:/bin/sh\n"),
		testimage.File("etc/group", "root:x:0:\nu:x:1000:\nimg:x:50000:u\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	pushTestimage(t, users, img)
	if _, err := e.images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: users}}); err != nil {
		t.Fatal(err)
	}
	cfg := e.podConfig(t, "sec", false)
	pod := e.runPod(t, cfg)
	createIn := func(pod string, cfg *runtimeapi.PodSandboxConfig, image, name string, sc *runtimeapi.LinuxContainerSecurityContext, res *runtimeapi.LinuxContainerResources, args ...string) (string, error) {
		r, err := e.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: cfg, Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: name},
			Image:    &runtimeapi.ImageSpec{Image: image},
			Command:  args,
			Linux:    &runtimeapi.LinuxContainerConfig{SecurityContext: sc, Resources: res},
		}})
		if err != nil {
			return "", err
		}
		_, err = e.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: r.ContainerId})
		return r.ContainerId, err
	}
	create := func(name string, sc *runtimeapi.LinuxContainerSecurityContext, res *runtimeapi.LinuxContainerResources, args ...string) (string, error) {
		return createIn(pod, cfg, e.busybox, name, sc, res, args...)
	}
	exec := func(id string, args ...string) *runtimeapi.ExecSyncResponse {
		t.Helper()
		r, err := e.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: args})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	def, err := create("default", &runtimeapi.LinuxContainerSecurityContext{
		Seccomp:     &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
		MaskedPaths: []string{"/etc/hostname"},
	}, nil, "sleep", "600")
	if err != nil {
		t.Fatal(err)
	}
	if r := exec(def, "grep", "Seccomp:", "/proc/self/status"); !strings.Contains(string(r.Stdout), "2") {
		t.Errorf("runtime/default: %q", r.Stdout)
	}
	if r := exec(def, "cat", "/etc/hostname"); len(r.Stdout) != 0 {
		t.Errorf("a masked path reads %q", r.Stdout)
	}

	profile := filepath.Join(t.TempDir(), "no-chmod.json")
	if err := os.WriteFile(profile, []byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["chmod","fchmodat","fchmodat2"],"action":"SCMP_ACT_ERRNO"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	local, err := create("localhost", &runtimeapi.LinuxContainerSecurityContext{
		Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: profile},
	}, nil, "sleep", "600")
	if err != nil {
		t.Fatal(err)
	}
	if r := exec(local, "chmod", "400", "/tmp"); r.ExitCode == 0 || !strings.Contains(string(r.Stderr), "Operation not permitted") {
		t.Errorf("chmod under a profile that refuses it: %d %q", r.ExitCode, r.Stderr)
	}

	if _, err := create("group", &runtimeapi.LinuxContainerSecurityContext{RunAsGroup: &runtimeapi.Int64Value{Value: 1}}, nil, "true"); err == nil {
		t.Errorf("run_as_group without a user was accepted")
	}

	// Users: run_as_user takes the primary group and the groups of the
	// image's /etc/group; run_as_group replaces the primary one;
	// supplemental groups are added (and alone under Strict).
	for _, tc := range []struct {
		name string
		sc   *runtimeapi.LinuxContainerSecurityContext
		want string
	}{
		{"uid", &runtimeapi.LinuxContainerSecurityContext{RunAsUser: &runtimeapi.Int64Value{Value: 1000}, SupplementalGroups: []int64{1234}}, "uid=1000 gid=1000 groups=1000,1234,50000"},
		{"name-group", &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: "u", RunAsGroup: &runtimeapi.Int64Value{Value: 7}}, "uid=1000 gid=7 groups=7,50000"},
		{"strict", &runtimeapi.LinuxContainerSecurityContext{RunAsUser: &runtimeapi.Int64Value{Value: 1000}, SupplementalGroups: []int64{1234},
			SupplementalGroupsPolicy: runtimeapi.SupplementalGroupsPolicy_Strict}, "uid=1000 gid=1000 groups=1000,1234"},
	} {
		id, err := createIn(pod, cfg, users, "user-"+tc.name, tc.sc, nil, "sleep", "600")
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		// busybox's id names known ids: keep the numbers only.
		r := exec(id, "sh", "-c", `echo "uid=$(id -u) gid=$(id -g) groups=$(id -G | tr ' ' '\n' | sort -n | paste -sd, -)"`)
		if got := strings.TrimSpace(string(r.Stdout)); got != tc.want {
			t.Errorf("%s: %q (%s), want %q", tc.name, got, r.Stderr, tc.want)
		}
	}

	// PID namespaces: CONTAINER has its own (pid 1 is its command),
	// TARGET joins another container's; its score is clamped to berthd's.
	own, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", e.d.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	target, err := create("target", &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}},
		&runtimeapi.LinuxContainerResources{OomScoreAdj: -1000}, "sleep", "601")
	if err != nil {
		t.Fatal(err)
	}
	if r := exec(target, "cat", "/proc/1/cmdline", "/proc/1/oom_score_adj"); !strings.HasPrefix(string(r.Stdout), "sleep\x00601\x00") || !strings.HasSuffix(string(r.Stdout), "\x00"+string(own)) {
		t.Errorf("pid namespace CONTAINER, oom_score_adj -1000 with berthd's own %q: pid 1 is %q", own, r.Stdout)
	}
	debug, err := create("debug", &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: target}}, nil, "sleep", "602")
	if err != nil {
		t.Fatal(err)
	}
	if r := exec(debug, "cat", "/proc/1/cmdline"); string(r.Stdout) != "sleep\x00601\x00" {
		t.Errorf("pid namespace TARGET: pid 1 is %q, want the target's", r.Stdout)
	}

	// Privileged: refused in a pod that is not; in a privileged pod the
	// container has berthd's capabilities, no seccomp filter, no masked
	// paths and the host's devices.
	if _, err := create("priv", &runtimeapi.LinuxContainerSecurityContext{Privileged: true}, nil, "true"); status.Code(err) != codes.InvalidArgument {
		t.Errorf("privileged container in a pod that is not: %v", err)
	}
	privCfg := e.podConfig(t, "sec-priv", false)
	privCfg.Linux.SecurityContext.Privileged = true
	privPod := e.runPod(t, privCfg)
	priv, err := createIn(privPod, privCfg, e.busybox, "priv", &runtimeapi.LinuxContainerSecurityContext{
		Privileged: true, Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
	}, nil, "sleep", "600")
	if err != nil {
		t.Fatal(err)
	}
	capEff := func(status string) string {
		for _, l := range strings.Split(status, "\n") {
			if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
				return strings.TrimSpace(v)
			}
		}
		return ""
	}
	daemonStatus, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", e.d.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	r := exec(priv, "cat", "/proc/self/status")
	if got, want := capEff(string(r.Stdout)), capEff(string(daemonStatus)); got == "" || got != want || !strings.Contains(string(r.Stdout), "Seccomp:\t0") {
		t.Errorf("privileged: CapEff %q, want berthd's %q; status:\n%s", got, want, r.Stdout)
	}
	if r := exec(priv, "sh", "-c", "ls /dev/kmsg && ! grep ' /proc/kcore ' /proc/self/mountinfo"); r.ExitCode != 0 {
		t.Errorf("privileged: no host device, or /proc/kcore masked: %s%s", r.Stdout, r.Stderr)
	}
	if _, err := e.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: privPod}); err != nil {
		t.Fatal(err)
	}

	oom, err := create("oom", nil, &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 15 << 20, MemorySwapLimitInBytes: 15 << 20},
		"sh", "-c", "dd if=/dev/zero of=/dev/null bs=20M")
	if err != nil {
		t.Fatal(err)
	}
	if st := e.waitExited(t, oom); st.Reason != "OOMKilled" || st.ExitCode != 137 {
		t.Errorf("OOM: %v", st)
	}
	if _, err := e.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatal(err)
	}
	e.checkNothingLeft(t)
}
