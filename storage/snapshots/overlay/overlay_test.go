package overlay

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/snapshots"
	"github.com/berthrt/berth/storage/snapshots/snapshotstest"
)

func TestOverlaySuite(t *testing.T) {
	_, err := os.Stat("/sys/module/overlay")
	testutil.Require(t, err == nil, "overlayfs is not available (modprobe overlay)")
	snapshotstest.Run(t, Name, func(root string) (snapshots.Snapshotter, error) { return New(root) })
}

func TestMountRules(t *testing.T) {
	d := driver{indexOff: true}
	dir, p1, p2 := "/r/snapshots/3", "/r/snapshots/2", "/r/snapshots/1"
	tests := []struct {
		name    string
		kind    snapshots.Kind
		parents []string
		typ     string
		opts    []string
		source  string
	}{
		{"active alone", snapshots.KindActive, nil, "bind", []string{"rbind", "rw"}, dir + "/fs"},
		{"view alone", snapshots.KindView, nil, "bind", []string{"rbind", "ro"}, dir + "/fs"},
		{"view of one", snapshots.KindView, []string{p1}, "bind", []string{"rbind", "ro"}, p1 + "/fs"},
		{"view of two", snapshots.KindView, []string{p1, p2}, "overlay",
			[]string{"index=off", "lowerdir=" + p1 + "/fs:" + p2 + "/fs"}, "overlay"},
		{"active on two", snapshots.KindActive, []string{p1, p2}, "overlay",
			[]string{"index=off", "workdir=" + dir + "/work", "upperdir=" + dir + "/fs", "lowerdir=" + p1 + "/fs:" + p2 + "/fs"}, "overlay"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := d.Mounts(dir, tt.kind, tt.parents)
			if len(m) != 1 || m[0].Type != tt.typ || m[0].Source != tt.source || !equal(m[0].Options, tt.opts) {
				t.Errorf("Mounts = %+v, want one %s of %s with %q", m, tt.typ, tt.source, tt.opts)
			}
		})
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRootWithComma(t *testing.T) {
	if _, err := New(t.TempDir() + "/a,b"); err == nil {
		t.Error("New accepted a root with a comma")
	}
}

// TestSnapshotFoldersSpread: on ext4, New marks the folder that holds the
// snapshots' folders with FS_TOPDIR_FL, so that ext4 spreads them over
// its block groups (fsstore's spreadFolders says why).
func TestSnapshotFoldersSpread(t *testing.T) {
	const fsTopdirFL = 0x00020000 // linux/fs.h
	root := filepath.Join(testutil.LoopExt4(t), "overlayfs")
	sn, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := sn.Close(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "snapshots")
	flags := testutil.InodeFlags(t, dir)
	if flags&fsTopdirFL == 0 {
		t.Errorf("%s: flags %#x lack FS_TOPDIR_FL", dir, flags)
	}
}
