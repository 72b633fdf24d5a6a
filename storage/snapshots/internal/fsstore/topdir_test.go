package fsstore

import (
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/internal/testutil"
)

// TestSpreadFoldersExt4: the flag is set, the other flags are kept, and
// a second call changes nothing.
func TestSpreadFoldersExt4(t *testing.T) {
	dir := filepath.Join(testutil.LoopExt4(t), "snapshots")
	if err := unix.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	before := testutil.InodeFlags(t, dir)
	for range 2 {
		if err := spreadFolders(dir); err != nil {
			t.Fatal(err)
		}
		if got, want := testutil.InodeFlags(t, dir), before|fsTopdirFL; got != want {
			t.Fatalf("flags %#x after spreadFolders, want %#x", got, want)
		}
	}
}

// TestSpreadFoldersUnsupported: tmpfs and btrfs have inode flags but
// refuse FS_TOPDIR_FL (EOPNOTSUPP); spreadFolders says nothing there.
func TestSpreadFoldersUnsupported(t *testing.T) {
	for name, mount := range map[string]func(testing.TB) string{"tmpfs": tmpfs, "btrfs": testutil.LoopBtrfs} {
		t.Run(name, func(t *testing.T) {
			dir := mount(t)
			if err := spreadFolders(dir); err != nil {
				t.Errorf("spreadFolders on %s: %v, want nil", name, err)
			}
			if testutil.InodeFlags(t, dir)&fsTopdirFL != 0 {
				t.Errorf("%s took FS_TOPDIR_FL", name)
			}
		})
	}
}

// tmpfs mounts a small tmpfs on a new folder, unmounted at cleanup.
func tmpfs(t testing.TB) string {
	t.Helper()
	testutil.RequireRoot(t)
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}
