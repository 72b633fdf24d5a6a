package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestCRISecurity checks the parts of the security context part 1 covers
// (seccomp, masked paths, run_as_group without a user) and the OOMKilled
// reason.
func TestCRISecurity(t *testing.T) {
	e := newCRIEnv(t)
	ctx := e.ctx(t)
	cfg := e.podConfig(t, "sec", false)
	pod := e.runPod(t, cfg)
	create := func(name string, sc *runtimeapi.LinuxContainerSecurityContext, res *runtimeapi.LinuxContainerResources, args ...string) (string, error) {
		r, err := e.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: cfg, Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: name},
			Image:    &runtimeapi.ImageSpec{Image: e.busybox},
			Command:  args,
			Linux:    &runtimeapi.LinuxContainerConfig{SecurityContext: sc, Resources: res},
		}})
		if err != nil {
			return "", err
		}
		_, err = e.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: r.ContainerId})
		return r.ContainerId, err
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
