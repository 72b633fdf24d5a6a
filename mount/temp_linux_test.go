package mount

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthrt/berth/errdefs"
)

// TestWithTempMount: a bind mount of a folder anyone may enter is shown
// under a folder only root may enter (tightened when it existed looser),
// nosuid and nodev, and is gone afterwards, also when fn fails.
func TestWithTempMount(t *testing.T) {
	requireRoot(t)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(mountDir(t), "tmpmounts")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var seen string
	err := WithTempMount(dir, []Mount{{Type: "bind", Source: src, Options: []string{"rbind", "ro"}}}, func(root string) error {
		seen = root
		if filepath.Dir(root) != dir {
			t.Errorf("mounted at %s, not in %s", root, dir)
		}
		if data, err := os.ReadFile(filepath.Join(root, "f")); err != nil || string(data) != "x" {
			t.Errorf("read through the mount: %q, %v", data, err)
		}
		mounts := mountsUnder(t, root)
		if len(mounts) != 1 {
			t.Fatalf("mounts at %s: %d", root, len(mounts))
		}
		for _, o := range []string{"nosuid", "nodev", "ro"} {
			if !strings.Contains(","+mounts[0].Options+",", ","+o+",") {
				t.Errorf("mount options %q lack %s", mounts[0].Options, o)
			}
		}
		return os.ErrClosed
	})
	if !errors.Is(err, os.ErrClosed) {
		t.Errorf("error %v, want fn's", err)
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != TempMountPerm {
		t.Errorf("temporary mount folder: %v, %v; want mode %v", st.Mode(), err, os.FileMode(TempMountPerm))
	}
	if _, err := os.Stat(seen); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s after WithTempMount: %v, want it removed", seen, err)
	}
	if err := WithTempMount("", nil, func(string) error { return nil }); !errdefs.IsInvalidArgument(err) {
		t.Errorf("no folder: %v, want invalid argument", err)
	}
}

// TestCleanupTempMounts removes what a killed process left mounted.
func TestCleanupTempMounts(t *testing.T) {
	requireRoot(t)
	dir := filepath.Join(mountDir(t), "tmpmounts")
	left := filepath.Join(dir, "m-1")
	if err := os.MkdirAll(left, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := (Mount{Type: "tmpfs", Source: "tmpfs"}).Mount(left); err != nil {
		t.Fatal(err)
	}
	if err := CleanupTempMounts(dir); err != nil {
		t.Fatal(err)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Errorf("after cleanup: %v, %v", entries, err)
	}
	if err := CleanupTempMounts(filepath.Join(dir, "missing")); err != nil {
		t.Errorf("a missing folder: %v", err)
	}
}
