package integration

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCtlRunRmDeletesRuntimeContainer: once `berthctl run --rm`'s task has
// gone (its shim exited and its set-aside bundle removed), the runtime's
// container is gone too: runc's state folder and the container's cgroup
// in every hierarchy. The shim deletes the runtime's container after the
// daemon has renamed the bundle aside (task/release.go, supervisor's
// aside.go); when runc's --log named a file in the bundle by its old
// path, that delete failed at once, deleted nothing, and every run left
// its cgroups behind.
func TestCtlRunRmDeletesRuntimeContainer(t *testing.T) {
	d := newDaemon(t)
	c := newCtl(t, d)
	const ns = "ctl-rm-runtime"
	d.namespacesUsed.Store(ns, true)
	archive := filepath.Join(t.TempDir(), "busybox.tar")
	if err := os.WriteFile(archive, busyboxArchive(t).Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	c.ok("-n", ns, "images", "import", archive)
	ids := []string{"rm-a", "rm-b", "rm-c"}
	for _, id := range ids {
		c.ok("-n", ns, "run", "--rm", commitBase, id, "/bin/true")
	}
	aside := filepath.Join(d.state, ".deleted")
	eventually(t, 20*time.Second, "the set-aside bundles removed", func() bool {
		entries, err := os.ReadDir(aside)
		return (err == nil && len(entries) == 0) || os.IsNotExist(err)
	})
	for _, id := range ids {
		if _, err := os.Stat(filepath.Join(d.state, ".runc", ns, id)); !os.IsNotExist(err) {
			t.Errorf("runc's state folder of %s: %v, want it gone", id, err)
		}
		for _, h := range cgroupHierarchies() {
			cg := filepath.Join(h, "berth", ns, id)
			if _, err := os.Stat(cg); !os.IsNotExist(err) {
				t.Errorf("cgroup %s: %v, want it gone", cg, err)
				os.Remove(cg) // empty: its container exited
			}
		}
	}
}
