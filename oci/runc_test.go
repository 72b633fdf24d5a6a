package oci

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
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
	why := "running a container needs " + strings.Join(missing, ", ")
	if os.Getenv("CI") == "" {
		t.Skip("skipping: " + why)
	}
	t.Fatal(why)
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
			bundle := t.TempDir()
			rootfs := filepath.Join(bundle, "rootfs")
			for _, d := range []string{"bin", "etc"} {
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
			for _, applet := range []string{"sh", "hostname", "id"} {
				if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", applet)); err != nil {
					t.Fatal(err)
				}
			}

			args := "echo $(hostname) $(id -u) $(id -g)"
			if strings.Contains(tt.name, "groups") {
				args += " $(id -G)"
			}
			opts := append([]SpecOpts{WithProcessArgs("sh", "-c", args)}, tt.opts...)
			s, err := GenerateSpec(context.Background(), namespace, id, opts...)
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
				t.Fatalf("runc run: %v\n%s", err, stderr.String())
			}
			if string(out) != tt.want {
				t.Errorf("output %q, want %q", out, tt.want)
			}
		})
	}
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
