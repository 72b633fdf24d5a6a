package dirs

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestNames(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"a", "b", ".runc", ".spare"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	got, err := Names(dir)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if want := []string{"a", "b"}; !slices.Equal(got, want) {
		t.Errorf("Names = %q, want %q", got, want)
	}
	if got, err := Names(filepath.Join(dir, "missing")); err != nil || got != nil {
		t.Errorf("Names(missing) = %q, %v; want none, nil", got, err)
	}
	if _, err := Names(filepath.Join(dir, "file")); err == nil {
		t.Error("Names(file): no error")
	}
}
