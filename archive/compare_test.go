package archive_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"sync/atomic"
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

// TestCompareSwapRace: a process that swaps a folder of upper for a
// symlink to a folder outside the trees, over and over while Compare
// walks, never gets a file of that folder into the layer (the walk goes
// by descriptors and never follows a symlink). The folder holds a file of
// the same name as the outside one, as an attacker would name it after a
// host file, so that a walk that listed the real folder and then reads
// by path through the symlink reads the host's bytes.
func TestCompareSwapRace(t *testing.T) {
	testutil.RequireRoot(t)
	const rounds = 500
	base := t.TempDir()
	lower, upper, host := filepath.Join(base, "lower"), filepath.Join(base, "upper"), filepath.Join(base, "host")
	d, aside := filepath.Join(upper, "d"), filepath.Join(upper, "d.aside")
	for _, dir := range []string{lower, d, host} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const marker, secret = "marker", "host secret"
	if err := os.WriteFile(filepath.Join(host, marker), []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	// Files listed before the marker give the swap time to happen.
	for i := range 100 {
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%03d", i)), []byte("container"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(d, marker), []byte("container"), 0o644); err != nil {
		t.Fatal(err)
	}

	stop, done := make(chan struct{}), make(chan struct{})
	var swaps atomic.Int64
	spin := func() {
		for start := time.Now(); time.Since(start) < 50*time.Microsecond; {
		}
	}
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			// d is a folder for a while, then a symlink to host for a
			// while. Each step may fail harmlessly when one before did.
			spin()
			os.Rename(d, aside)
			os.Symlink(host, d)
			spin()
			os.Remove(d)
			os.Rename(aside, d)
			swaps.Add(1)
		}
	}()
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-done
	})

	failed := 0
	for round := range rounds {
		var layer bytes.Buffer
		if err := archive.Compare(context.Background(), &layer, lower, upper); err != nil {
			// An entry replaced between two reads of it may fail a
			// round; it must never leak.
			t.Logf("round %d: %v", round, err)
			failed++
			continue
		}
		if bytes.Contains(layer.Bytes(), []byte(secret)) {
			t.Fatalf("round %d (after %d swaps): the layer holds the bytes of the host's %s", round, swaps.Load(), marker)
		}
	}
	close(stop)
	<-done
	t.Logf("%d rounds of Compare (%d failed), %d swaps: no host file in any layer", rounds, failed, swaps.Load())
}
