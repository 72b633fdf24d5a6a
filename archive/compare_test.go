package archive_test

import (
	"bytes"
	"context"
	"os"
	osexec "os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/archive"
	"github.com/berthrt/berth/internal/testutil"
)

// TestCompareRoundTrip: Compare(lower, upper) applied onto a copy of
// lower gives upper.
func TestCompareRoundTrip(t *testing.T) {
	testutil.RequireRoot(t, "cp")
	base := t.TempDir()
	lower, upper, copyOf := filepath.Join(base, "lower"), filepath.Join(base, "upper"), filepath.Join(base, "copy")
	for _, d := range []string{lower, copyOf} {
		os.Mkdir(d, 0o755)
		for i, l := range layers(t) {
			if err := apply(t, d, l); err != nil {
				t.Fatalf("layer %d: %v", i, err)
			}
		}
	}
	if out, err := osexec.Command("cp", "-a", lower, upper).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	// Changes: add, modify, delete, chmod, chown, a folder replaced by a
	// file and a file by a folder, a removed folder, hardlinks, a
	// symlink retargeted, an xattr.
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(upper, "new"), []byte("new"), 0o640))
	must(os.WriteFile(filepath.Join(upper, "a/f2"), []byte("changed"), 0o644))
	must(os.Remove(filepath.Join(upper, "a/f1")))
	must(os.Chmod(filepath.Join(upper, "b/y"), 0o4711))
	must(os.Lchown(filepath.Join(upper, "b/z"), 12, 34))
	must(os.RemoveAll(filepath.Join(upper, "c")))
	must(os.WriteFile(filepath.Join(upper, "c"), []byte("c is a file"), 0o644))
	must(os.Remove(filepath.Join(upper, "b/z")))
	must(os.MkdirAll(filepath.Join(upper, "b/z/deep"), 0o750))
	must(os.WriteFile(filepath.Join(upper, "b/z/deep/f"), []byte("deep"), 0o644))
	must(os.Link(filepath.Join(upper, "new"), filepath.Join(upper, "b/newlink")))
	must(os.Remove(filepath.Join(upper, "e")))
	must(os.Symlink("/b/y", filepath.Join(upper, "e")))
	must(unix.Lsetxattr(filepath.Join(upper, "a/f2"), "user.test", []byte("v"), 0))
	must(unix.Mkfifo(filepath.Join(upper, "fifo"), 0o600))
	old := time.Unix(1500000000, 0)
	must(os.Chtimes(filepath.Join(upper, "new"), old, old))

	var layer bytes.Buffer
	if err := archive.Compare(context.Background(), &layer, lower, upper); err != nil {
		t.Fatal(err)
	}
	if err := apply(t, copyOf, layer.Bytes()); err != nil {
		t.Fatal(err)
	}
	treeEqual(t, copyOf, upper)
	if a, b := statT(t, filepath.Join(copyOf, "new")), statT(t, filepath.Join(copyOf, "b/newlink")); a.Ino != b.Ino {
		t.Error("hardlinked files were not kept as hardlinks")
	}

	// The same trees give the same tar; no change gives an empty one.
	var again bytes.Buffer
	if err := archive.Compare(context.Background(), &again, lower, upper); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(layer.Bytes(), again.Bytes()) {
		t.Error("Compare is not deterministic")
	}
	var none bytes.Buffer
	if err := archive.Compare(context.Background(), &none, upper, upper); err != nil {
		t.Fatal(err)
	}
	if n := len(names(t, applyTo(t, none.Bytes()))); n != 0 {
		t.Errorf("Compare of a tree with itself has %d entries", n)
	}
}

func applyTo(t *testing.T, layer []byte) string {
	t.Helper()
	dir := t.TempDir()
	if err := apply(t, dir, layer); err != nil {
		t.Fatal(err)
	}
	return dir
}
