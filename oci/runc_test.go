package oci

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthrt/berth/internal/testenv"
)

// requireRunc returns the paths of runc and a static busybox, skipping on a
// developer's machine that lacks them or root, and failing in CI.
func requireRunc(t *testing.T) (runc, busybox string) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	runc, err := exec.LookPath("runc")
	if err != nil {
		missing = append(missing, "runc")
	}
	busybox = "/bin/busybox" // Debian's busybox-static
	if _, err := os.Stat(busybox); err != nil {
		missing = append(missing, busybox)
	}
	if len(missing) == 0 {
		return runc, busybox
	}
	testenv.Require(t, false, "running a container needs "+strings.Join(missing, ", "))
	return "", ""
}

// TestRuncRunsSpec checks that runc accepts and runs generated specs.
func TestRuncRunsSpec(t *testing.T) {
	runc, busybox := requireRunc(t)
	const namespace = "berth-oci-test"
	t.Cleanup(func() { removeCgroupParents(namespace) })

	tests := []struct {
		name string
		opts []SpecOpts
		want string
	}{
		{"default", nil, "default 0 0\n"},
		{"user and limits", []SpecOpts{
			WithUIDGID(1000, 1000), WithRootFSReadonly, WithNoNewPrivileges,
			WithMemoryLimit(64 << 20), WithCPUs(0.5), WithPidsLimit(32),
		}, "user-and-limits 1000 1000\n"},
		{"host network", []SpecOpts{WithHostNamespace(specs.NetworkNamespace)}, "host-network 0 0\n"},
		// The groups an image's user had must not follow WithUIDGID
		// into the process (CVE-2023-25173): id -G lists only 1000.
		{"uid gid drops groups", []SpecOpts{
			withGroups(0, 10), WithUIDGID(1000, 1000),
		}, "uid-gid-drops-groups 1000 1000 1000\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := strings.ReplaceAll(tt.name, " ", "-")
			args := "echo $(hostname) $(id -u) $(id -g)"
			if strings.Contains(tt.name, "groups") {
				args += " $(id -G)"
			}
			bundle := newBusyboxBundle(t, busybox)
			out, err := runInRunc(t, runc, bundle, namespace, id, append([]SpecOpts{WithProcessArgs("sh", "-c", args)}, tt.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			if out != tt.want {
				t.Errorf("output %q, want %q", out, tt.want)
			}
		})
	}
}

// newBusyboxBundle returns a bundle folder whose rootfs holds a static
// busybox with the applets tests call, and empty /etc and /tmp.
func newBusyboxBundle(t *testing.T, busybox string) string {
	t.Helper()
	bundle := t.TempDir()
	rootfs := filepath.Join(bundle, "rootfs")
	for _, d := range []string{"bin", "etc", "tmp"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin/busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, applet := range []string{"sh", "hostname", "id", "cat", "grep", "wc", "ls", "unshare", "true", "touch", "echo"} {
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	return bundle
}

// runInRunc writes the spec opts make into bundle and runs it with runc
// as container id, returning its stdout; an error carries runc's stderr.
func runInRunc(t *testing.T, runc, bundle, namespace, id string, opts ...SpecOpts) (string, error) {
	t.Helper()
	s, err := GenerateSpec(context.Background(), namespace, id, append([]SpecOpts{WithRootFSPath(filepath.Join(bundle, "rootfs"))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	t.Cleanup(func() { _ = exec.Command(runc, "--root", state, "delete", "--force", id).Run() })
	cmd := exec.Command(runc, "--root", state, "run", "--bundle", bundle, id)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("runc run: %v\n%s%s", err, out, stderr.String())
	}
	return string(out), nil
}

// withGroups sets supplementary groups, as WithUser does for a user that
// /etc/group lists.
func withGroups(gids ...uint32) SpecOpts {
	return func(_ context.Context, s *specs.Spec) error {
		s.Process.User.AdditionalGids = gids
		return nil
	}
}

// removeCgroupParents removes the empty cgroups runc leaves above the
// containers' own: /berth/<namespace> and /berth, in every hierarchy.
func removeCgroupParents(namespace string) {
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*")
	hierarchies = append(hierarchies, "/sys/fs/cgroup")
	for _, h := range hierarchies {
		for _, p := range []string{filepath.Join(cgroupParent, namespace), cgroupParent} {
			_ = os.Remove(filepath.Join(h, p)) // fails, harmlessly, while not empty
		}
	}
}
