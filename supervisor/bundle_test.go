package supervisor

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/berthrt/berth/internal/testutil"
)

// TestWriteBundlePerms: a bundle is root's alone (0700), or, in a user
// namespace, traversable (0710) by the host group of the namespace's
// root, which runc's init prepares the rootfs as; the namespace folder
// above it may be traversed only, also when it was made looser before.
func TestWriteBundlePerms(t *testing.T) {
	testutil.Require(t, os.Geteuid() == 0, "chown needs root")
	const userns = `{"linux":{"namespaces":[{"type":"pid"},{"type":"user"}],` +
		`"uidMappings":[{"containerID":0,"hostID":100000,"size":65536}],` +
		`"gidMappings":[{"containerID":1,"hostID":300001,"size":10},{"containerID":0,"hostID":200000,"size":1}]}}`
	tests := []struct {
		name, spec string
		perm       os.FileMode
		gid        uint32
	}{
		{"no user namespace", `{"linux":{"namespaces":[{"type":"pid"}]}}`, bundlePerm, 0},
		{"user namespace", userns, bundleUsernsPerm, 200000},
		{"user namespace without a mapping of gid 0", `{"linux":{"namespaces":[{"type":"user"}]}}`, bundlePerm, 0},
		{"mappings without a user namespace", `{"linux":{"gidMappings":[{"containerID":0,"hostID":5,"size":1}]}}`, bundlePerm, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := filepath.Join(t.TempDir(), "ns")
			if err := os.Mkdir(ns, 0o777); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(ns, 0o777); err != nil {
				t.Fatal(err)
			}
			bundle := filepath.Join(ns, "id")
			if err := writeBundle(bundle, []byte(tt.spec), "runc", nil); err != nil {
				t.Fatal(err)
			}
			st, err := os.Stat(bundle)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != tt.perm || st.Sys().(*syscall.Stat_t).Gid != tt.gid || st.Sys().(*syscall.Stat_t).Uid != 0 {
				t.Errorf("bundle: mode %v, owner %d:%d; want %v, 0:%d", st.Mode().Perm(), st.Sys().(*syscall.Stat_t).Uid, st.Sys().(*syscall.Stat_t).Gid, tt.perm, tt.gid)
			}
			if st, err := os.Stat(ns); err != nil || st.Mode().Perm() != namespacePerm {
				t.Errorf("namespace folder: %v, %v; want mode %v", st.Mode().Perm(), err, os.FileMode(namespacePerm))
			}
		})
	}
}
