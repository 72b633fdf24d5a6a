package fsstore

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestDiskUsage(t *testing.T) {
	root := t.TempDir()
	data := make([]byte, 10000)
	for _, name := range []string{"a", "sub/b"} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A hard link counts once.
	if err := os.Link(filepath.Join(root, "a"), filepath.Join(root, "sub/a-link")); err != nil {
		t.Fatal(err)
	}
	u, err := DiskUsage(root)
	if err != nil {
		t.Fatal(err)
	}
	// root, sub, a (with its link), b.
	if u.Inodes != 4 || u.Size < 2*10000 {
		t.Fatalf("usage %+v: want 4 inodes and at least 20000 bytes", u)
	}
	if _, err := DiskUsage(filepath.Join(root, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("usage of a missing root: %v", err)
	}
}

// TestDiskUsageVanished: entries removed between the listing of their
// folder and their stat, as a running container does, are skipped.
func TestDiskUsageVanished(t *testing.T) {
	root := t.TempDir()
	for _, name := range []string{"gone", "kept"} {
		if err := os.WriteFile(filepath.Join(root, name), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(root, "gone")); err != nil {
		t.Fatal(err)
	}
	w := usageWalk{root: root, linked: map[inode]struct{}{}}
	for _, d := range entries {
		if err := w.visit(filepath.Join(root, d.Name()), d, nil); err != nil {
			t.Fatalf("visit %s: %v", d.Name(), err)
		}
	}
	if w.usage.Inodes != 1 {
		t.Fatalf("counted %d inodes, want the one left", w.usage.Inodes)
	}
	// A folder that went before it was read is skipped too; root is not.
	gone := &fs.PathError{Op: "open", Path: filepath.Join(root, "dir"), Err: fs.ErrNotExist}
	if err := w.visit(gone.Path, nil, gone); err != nil {
		t.Fatalf("vanished folder: %v", err)
	}
	if err := w.visit(root, nil, &fs.PathError{Op: "lstat", Path: root, Err: fs.ErrNotExist}); err == nil {
		t.Fatal("a missing root is no error")
	}
	if err := w.visit(gone.Path, nil, &fs.PathError{Op: "open", Path: gone.Path, Err: fs.ErrPermission}); err == nil {
		t.Fatal("an error other than a removal is dropped")
	}
}
