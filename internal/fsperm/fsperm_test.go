package fsperm

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestRestrict(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	tests := []struct {
		name       string
		existing   fs.FileMode // 0: the folder is missing
		perm, want fs.FileMode
	}{
		{"made", 0, 0o700, 0o700},
		{"made traversable", 0, 0o711, 0o711},
		{"tightened", 0o755, 0o700, 0o700},
		{"others keep only traversal", 0o777, 0o711, 0o711},
		{"a stricter mode is kept", 0o700, 0o711, 0o700},
		{"group traversal kept when allowed", 0o750, 0o710, 0o710},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "a", "b")
			if tt.existing != 0 {
				if err := os.MkdirAll(dir, tt.existing); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(dir, tt.existing); err != nil {
					t.Fatal(err)
				}
			}
			if err := Restrict(dir, tt.perm); err != nil {
				t.Fatal(err)
			}
			st, err := os.Stat(dir)
			if err != nil {
				t.Fatal(err)
			}
			if got := st.Mode().Perm(); got != tt.want {
				t.Errorf("mode %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRestrictRefusesAFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Restrict(p, 0o700); err == nil {
		t.Error("Restrict on a file: no error")
	}
}
