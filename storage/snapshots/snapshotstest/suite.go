// Package snapshotstest is the test suite every snapshots.Snapshotter runs:
// Run(t, name, newSnapshotter). Its contexts carry the namespace
// "testsuite", so that a namespaced view runs it as it is.
//
// Tests that mount need root (and overlayfs for the overlay snapshotter):
// without it they fail in CI and are skipped elsewhere.
package snapshotstest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/mount"
	"github.com/berthrt/berth/namespaces"
	"github.com/berthrt/berth/snapshots"
)

// NewFunc opens the snapshotter under test with its files in root, a new
// empty folder; opened again on the same root it must find what it kept.
type NewFunc func(root string) (snapshots.Snapshotter, error)

// Namespace is the namespace of the suite's contexts.
const Namespace = "testsuite"

// Run runs the suite against the snapshotter that newSnapshotter opens,
// each test on a new root in the test's temp folder.
func Run(t *testing.T, name string, newSnapshotter NewFunc) {
	RunIn(t, name, "", newSnapshotter)
}

// RunIn is Run with each test's root a new folder in dir ("" for the
// test's temp folder), for a snapshotter that needs a filesystem of its
// kind there (btrfs). The folders stay in dir: the caller removes dir,
// or the filesystem, with what the snapshotter left in it.
func RunIn(t *testing.T, name, dir string, newSnapshotter NewFunc) {
	tests := []struct {
		name string
		fn   func(*testing.T, *env)
	}{
		{"ChainCommitView", testChainCommitView},
		{"ViewIsReadOnly", testViewIsReadOnly},
		{"Errors", testErrors},
		{"StatUpdateWalk", testStatUpdateWalk},
		{"Usage", testUsage},
		{"RemoveAndReuse", testRemoveAndReuse},
		{"ConcurrentPrepare", testConcurrentPrepare},
		{"Reopen", testReopen},
		{"HostileKeys", testHostileKeys},
		{"LongChain", testLongChain},
	}
	for _, tt := range tests {
		t.Run(name+"/"+tt.name, func(t *testing.T) {
			root := dir
			if root == "" {
				root = t.TempDir()
			} else {
				var err error
				if root, err = os.MkdirTemp(dir, tt.name+"-"); err != nil {
					t.Fatal(err)
				}
			}
			e := &env{root: root, newSnapshotter: newSnapshotter}
			e.open(t)
			tt.fn(t, e)
		})
	}
}

// env is one test's snapshotter and what reopens it.
type env struct {
	root           string
	newSnapshotter NewFunc
	sn             snapshots.Snapshotter
}

func (e *env) open(t *testing.T) {
	t.Helper()
	sn, err := e.newSnapshotter(e.root)
	if err != nil {
		t.Fatalf("open snapshotter in %s: %v", e.root, err)
	}
	e.sn = sn
	t.Cleanup(func() { sn.Close() })
}

func (e *env) reopen(t *testing.T) {
	t.Helper()
	if err := e.sn.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	e.open(t)
}

func ctx() context.Context {
	return namespaces.WithNamespace(context.Background(), Namespace)
}

// mountAt mounts mounts on a new folder and returns it; every mount under
// it is removed at cleanup, and by the returned func, whichever comes
// first.
func mountAt(t *testing.T, mounts []mount.Mount) (string, func()) {
	t.Helper()
	testutil.RequireRoot(t)
	dir := t.TempDir()
	unmount := func() {
		if err := mount.UnmountAll(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	}
	t.Cleanup(unmount)
	if err := mount.All(mounts, dir); err != nil {
		t.Fatalf("mount %.300v: %.300v", mounts, err)
	}
	return dir, unmount
}

// prepareWith prepares key on parent, mounts it, runs fill on the mounted
// folder, unmounts it and commits it as name.
func prepareWith(t *testing.T, sn snapshots.Snapshotter, name, key, parent string, fill func(dir string)) {
	t.Helper()
	mounts, err := sn.Prepare(ctx(), key, parent)
	if err != nil {
		t.Fatalf("Prepare(%q, %q): %v", key, parent, err)
	}
	dir, unmount := mountAt(t, mounts)
	fill(dir)
	unmount()
	if err := sn.Commit(ctx(), name, key); err != nil {
		t.Fatalf("Commit(%q, %q): %v", name, key, err)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkFiles checks that dir holds exactly want: path → content, "/" for
// a folder.
func checkFiles(t *testing.T, dir string, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() {
			got[rel] = "/"
			return nil
		}
		b, err := os.ReadFile(path)
		got[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected %s (%q)", k, got[k])
		}
	}
}

func wantClass(t *testing.T, what string, err, class error) {
	t.Helper()
	if !errors.Is(err, class) {
		t.Errorf("%s: got %v, want an error of class %v", what, err, class)
	}
}

func testChainCommitView(t *testing.T, e *env) {
	sn := e.sn
	prepareWith(t, sn, "base", "base-active", "", func(dir string) {
		writeFile(t, filepath.Join(dir, "etc/hostname"), "base")
		writeFile(t, filepath.Join(dir, "gone"), "to be removed")
	})
	prepareWith(t, sn, "top", "top-active", "base", func(dir string) {
		checkFiles(t, dir, map[string]string{"etc": "/", "etc/hostname": "base", "gone": "to be removed"})
		writeFile(t, filepath.Join(dir, "etc/hostname"), "top")
		writeFile(t, filepath.Join(dir, "bin/tool"), "tool")
		if err := os.Remove(filepath.Join(dir, "gone")); err != nil {
			t.Fatal(err)
		}
	})

	want := map[string]string{"etc": "/", "etc/hostname": "top", "bin": "/", "bin/tool": "tool"}
	for _, tc := range []struct{ key, parent string }{{"view-top", "top"}} {
		mounts, err := sn.View(ctx(), tc.key, tc.parent)
		if err != nil {
			t.Fatal(err)
		}
		dir, _ := mountAt(t, mounts)
		checkFiles(t, dir, want)
	}
	mounts, err := sn.View(ctx(), "view-base", "base")
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := mountAt(t, mounts)
	checkFiles(t, dir, map[string]string{"etc": "/", "etc/hostname": "base", "gone": "to be removed"})

	// A container on top of the chain writes without touching it.
	mounts, err = sn.Prepare(ctx(), "container", "top")
	if err != nil {
		t.Fatal(err)
	}
	again, err := sn.Mounts(ctx(), "container")
	if err != nil || !slices.EqualFunc(mounts, again, equalMount) {
		t.Errorf("Mounts = %+v, %v; Prepare returned %+v", again, err, mounts)
	}
	dir, _ = mountAt(t, mounts)
	writeFile(t, filepath.Join(dir, "etc/hostname"), "container")
	mounts, err = sn.View(ctx(), "view-top-again", "top")
	if err != nil {
		t.Fatal(err)
	}
	dir, _ = mountAt(t, mounts)
	checkFiles(t, dir, want)

	info, err := sn.Stat(ctx(), "top")
	if err != nil || info.Kind != snapshots.KindCommitted || info.Parent != "base" || info.Name != "top" {
		t.Errorf("Stat(top) = %+v, %v", info, err)
	}
	if _, err := sn.Stat(ctx(), "top-active"); !errdefs.IsNotFound(err) {
		t.Errorf("Stat of a committed key: %v, want not found", err)
	}
}

func equalMount(a, b mount.Mount) bool {
	return a.Type == b.Type && a.Source == b.Source && a.Target == b.Target && slices.Equal(a.Options, b.Options)
}

func testViewIsReadOnly(t *testing.T, e *env) {
	sn := e.sn
	prepareWith(t, sn, "l1", "a1", "", func(dir string) { writeFile(t, filepath.Join(dir, "one"), "1") })
	prepareWith(t, sn, "l2", "a2", "l1", func(dir string) { writeFile(t, filepath.Join(dir, "two"), "2") })
	for _, parent := range []string{"l1", "l2"} {
		mounts, err := sn.View(ctx(), "view-"+parent, parent)
		if err != nil {
			t.Fatal(err)
		}
		dir, _ := mountAt(t, mounts)
		if err := os.WriteFile(filepath.Join(dir, "new"), nil, 0o644); !errors.Is(err, unix.EROFS) {
			t.Errorf("write in a view of %s: got %v, want EROFS", parent, err)
		}
		if err := os.Remove(filepath.Join(dir, "one")); !errors.Is(err, unix.EROFS) {
			t.Errorf("remove in a view of %s: got %v, want EROFS", parent, err)
		}
		if err := sn.Commit(ctx(), "from-view-"+parent, "view-"+parent); !errdefs.IsFailedPrecondition(err) {
			t.Errorf("Commit of a view: got %v, want failed precondition", err)
		}
	}
}

func testErrors(t *testing.T, e *env) {
	sn := e.sn
	c := ctx()
	if _, err := sn.Prepare(c, "active", ""); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(c, "committed", "active"); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Prepare(c, "child", "committed"); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.View(c, "view", "committed"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		what  string
		err   error
		class error
	}{
		{"Prepare of an existing key", second(sn.Prepare(c, "child", "")), errdefs.ErrAlreadyExists},
		{"Prepare over a committed name", second(sn.Prepare(c, "committed", "")), errdefs.ErrAlreadyExists},
		{"View of an existing key", second(sn.View(c, "view", "committed")), errdefs.ErrAlreadyExists},
		{"Prepare on a missing parent", second(sn.Prepare(c, "x", "missing")), errdefs.ErrNotFound},
		{"Prepare on an active parent", second(sn.Prepare(c, "x", "child")), errdefs.ErrInvalidArgument},
		{"View of a view", second(sn.View(c, "x", "view")), errdefs.ErrInvalidArgument},
		{"Commit to an existing name", sn.Commit(c, "committed", "child"), errdefs.ErrAlreadyExists},
		{"Commit of a committed snapshot", sn.Commit(c, "again", "committed"), errdefs.ErrFailedPrecondition},
		{"Commit of a missing key", sn.Commit(c, "again", "missing"), errdefs.ErrNotFound},
		{"Remove of a parent", sn.Remove(c, "committed"), errdefs.ErrFailedPrecondition},
		{"Remove of a missing key", sn.Remove(c, "missing"), errdefs.ErrNotFound},
		{"Stat of a missing key", second(sn.Stat(c, "missing")), errdefs.ErrNotFound},
		{"Mounts of a missing key", second(sn.Mounts(c, "missing")), errdefs.ErrNotFound},
		{"Usage of a missing key", second(sn.Usage(c, "missing")), errdefs.ErrNotFound},
		{"Update of a missing key", second(sn.Update(c, snapshots.Info{Name: "missing"})), errdefs.ErrNotFound},
		{"Update of the parent", second(sn.Update(c, snapshots.Info{Name: "child", Parent: "x"}, "parent")), errdefs.ErrInvalidArgument},
		{"Walk with a bad filter", sn.Walk(c, func(context.Context, snapshots.Info) error { return nil }, "name=="), errdefs.ErrInvalidArgument},
		{"Prepare with a bad label", second(sn.Prepare(c, "x", "", snapshots.WithLabels(map[string]string{"": "v"}))), errdefs.ErrInvalidArgument},
	} {
		wantClass(t, tc.what, tc.err, tc.class)
	}
	// Nothing refused was made.
	for _, key := range []string{"x", "again"} {
		if _, err := sn.Stat(c, key); !errdefs.IsNotFound(err) {
			t.Errorf("Stat(%q) after refused calls: %v, want not found", key, err)
		}
	}
	// Children first, then the parent.
	for _, key := range []string{"child", "view", "committed"} {
		if err := sn.Remove(c, key); err != nil {
			t.Errorf("Remove(%q): %v", key, err)
		}
	}
}

func second[T any](_ T, err error) error { return err }

func testStatUpdateWalk(t *testing.T, e *env) {
	sn := e.sn
	c := ctx()
	if _, err := sn.Prepare(c, "a", "", snapshots.WithLabels(map[string]string{"role": "base", "keep": "1"})); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(c, "base", "a", snapshots.WithLabels(map[string]string{"role": "layer"})); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Prepare(c, "work", "base", snapshots.WithLabels(map[string]string{"role": "rootfs", "owner": "ci"})); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.View(c, "look", "base"); err != nil {
		t.Fatal(err)
	}

	info, err := sn.Stat(c, "work")
	if err != nil {
		t.Fatal(err)
	}
	if info.Kind != snapshots.KindActive || info.Parent != "base" || info.Labels["role"] != "rootfs" ||
		info.Created.IsZero() || info.Updated.Before(info.Created) {
		t.Errorf("Stat(work) = %+v", info)
	}
	base, err := sn.Stat(c, "base")
	if err != nil || len(base.Labels) != 1 || base.Labels["role"] != "layer" {
		t.Errorf("Stat(base) = %+v, %v; want the labels of the commit only", base, err)
	}

	updated, err := sn.Update(c, snapshots.Info{Name: "work", Labels: map[string]string{"owner": "cd", "new": "x", "role": "ignored"}},
		"labels.owner", "labels.new", "labels.absent")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"role": "rootfs", "owner": "cd", "new": "x"}
	if !mapsEqual(updated.Labels, want) || updated.Updated.Before(info.Updated) || !updated.Created.Equal(info.Created) {
		t.Errorf("Update = %+v, want labels %v", updated, want)
	}
	updated, err = sn.Update(c, snapshots.Info{Name: "work", Labels: map[string]string{"only": "this"}})
	if err != nil || !mapsEqual(updated.Labels, map[string]string{"only": "this"}) {
		t.Errorf("Update without field paths = %+v, %v", updated, err)
	}
	if got, _ := sn.Stat(c, "work"); !mapsEqual(got.Labels, updated.Labels) {
		t.Errorf("Stat after Update = %v, want %v", got.Labels, updated.Labels)
	}

	for _, tc := range []struct {
		filters []string
		want    []string
	}{
		{nil, []string{"base", "look", "work"}},
		{[]string{"kind==committed"}, []string{"base"}},
		{[]string{"kind==active", "kind==view"}, []string{"look", "work"}},
		{[]string{"parent==base"}, []string{"look", "work"}},
		{[]string{"name==work"}, []string{"work"}},
		{[]string{`name~="^(b|l)"`}, []string{"base", "look"}},
		{[]string{"labels.role==layer"}, []string{"base"}},
		{[]string{"labels.only"}, []string{"work"}},
		{[]string{"kind==active,labels.only==that"}, nil},
	} {
		var got []string
		err := sn.Walk(c, func(_ context.Context, info snapshots.Info) error {
			got = append(got, info.Name)
			return nil
		}, tc.filters...)
		slices.Sort(got)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("Walk(%q) = %q, %v; want %q", tc.filters, got, err, tc.want)
		}
	}
	stop := errors.New("stop")
	n := 0
	if err := sn.Walk(c, func(context.Context, snapshots.Info) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Errorf("Walk with fn failing: %v after %d calls", err, n)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func testUsage(t *testing.T, e *env) {
	sn := e.sn
	c := ctx()
	mounts, err := sn.Prepare(c, "active", "")
	if err != nil {
		t.Fatal(err)
	}
	dir, unmount := mountAt(t, mounts)
	const size = 1 << 20
	writeFile(t, filepath.Join(dir, "big"), strings.Repeat("x", size))
	writeFile(t, filepath.Join(dir, "sub/small"), "s")
	u, err := sn.Usage(c, "active")
	if err != nil || u.Size < size || u.Inodes < 3 {
		t.Errorf("Usage of an active snapshot after writing %d bytes = %+v, %v", size, u, err)
	}
	unmount()
	if err := sn.Commit(c, "layer", "active"); err != nil {
		t.Fatal(err)
	}
	cu, err := sn.Usage(c, "layer")
	if err != nil || cu != u {
		t.Errorf("Usage of the committed snapshot = %+v, %v; want %+v", cu, err, u)
	}
	// A child's own usage excludes its parent (overlay) or includes the
	// copy (native): either way it is a snapshot of its own.
	if _, err := sn.Prepare(c, "child", "layer"); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Usage(c, "child"); err != nil {
		t.Errorf("Usage(child): %v", err)
	}
}

func testRemoveAndReuse(t *testing.T, e *env) {
	sn := e.sn
	c := ctx()
	prepareWith(t, sn, "layer", "a", "", func(dir string) { writeFile(t, filepath.Join(dir, "old"), "old") })
	if err := sn.Remove(c, "layer"); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Stat(c, "layer"); !errdefs.IsNotFound(err) {
		t.Errorf("Stat after Remove: %v", err)
	}
	prepareWith(t, sn, "layer", "a", "", func(dir string) {
		checkFiles(t, dir, map[string]string{})
		writeFile(t, filepath.Join(dir, "new"), "new")
	})
	mounts, err := sn.View(c, "v", "layer")
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := mountAt(t, mounts)
	checkFiles(t, dir, map[string]string{"new": "new"})
}

func testConcurrentPrepare(t *testing.T, e *env) {
	sn := e.sn
	c := ctx()
	prepareWith(t, sn, "base", "a", "", func(dir string) { writeFile(t, filepath.Join(dir, "f"), "base") })
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, 2*n)
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, errs[i] = sn.Prepare(c, fmt.Sprintf("c-%d", i), "base")
		}()
		go func() {
			defer wg.Done()
			_, errs[n+i] = sn.Prepare(c, "same", "base")
		}()
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case i < n && err != nil:
			t.Errorf("Prepare(c-%d): %v", i, err)
		case i >= n && err == nil:
			won++
		case i >= n && !errdefs.IsAlreadyExists(err):
			t.Errorf("Prepare(same) lost with %v, want already exists", err)
		}
	}
	if won != 1 {
		t.Errorf("%d concurrent Prepares of one key succeeded, want 1", won)
	}
	count := 0
	if err := sn.Walk(c, func(context.Context, snapshots.Info) error { count++; return nil }, "parent==base"); err != nil || count != n+1 {
		t.Errorf("Walk found %d children of base (%v), want %d", count, err, n+1)
	}
}

func testReopen(t *testing.T, e *env) {
	prepareWith(t, e.sn, "base", "a", "", func(dir string) { writeFile(t, filepath.Join(dir, "kept"), "kept") })
	c := ctx()
	if _, err := e.sn.Prepare(c, "work", "base", snapshots.WithLabels(map[string]string{"k": "v"})); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sn.View(c, "look", "base"); err != nil {
		t.Fatal(err)
	}
	before := walkAll(t, e.sn)
	e.reopen(t)
	after := walkAll(t, e.sn)
	if !slices.EqualFunc(before, after, func(a, b snapshots.Info) bool {
		return a.Name == b.Name && a.Kind == b.Kind && a.Parent == b.Parent && mapsEqual(a.Labels, b.Labels) &&
			a.Created.Equal(b.Created) && a.Updated.Equal(b.Updated)
	}) {
		t.Errorf("after reopening:\n%+v\nbefore:\n%+v", after, before)
	}
	mounts, err := e.sn.Mounts(c, "look")
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := mountAt(t, mounts)
	checkFiles(t, dir, map[string]string{"kept": "kept"})
	if _, err := e.sn.Prepare(c, "work", ""); !errdefs.IsAlreadyExists(err) {
		t.Errorf("Prepare of a key kept across reopening: %v", err)
	}
}

func walkAll(t *testing.T, sn snapshots.Snapshotter) []snapshots.Info {
	t.Helper()
	var all []snapshots.Info
	if err := sn.Walk(ctx(), func(_ context.Context, info snapshots.Info) error {
		all = append(all, info)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(all, func(a, b snapshots.Info) int { return strings.Compare(a.Name, b.Name) })
	return all
}

func testHostileKeys(t *testing.T, e *env) {
	sn := e.sn
	c := ctx()
	fine := []string{
		"sha256:0b0f3c7a0f1b0c5c9b1d2f0e8c3a7b6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b",
		"../../../../etc/passwd",
		"/absolute/path",
		"a/b/c",
		".",
		"..",
		"spaces and\ttabs\nand newlines",
		"ünïcødé ✓",
		"%2e%2e%2f",
		strings.Repeat("k", snapshots.MaxKeyLength-16),
	}
	for i, key := range fine {
		if _, err := sn.Prepare(c, key, ""); err != nil {
			t.Errorf("Prepare(%.40q): %v", key, err)
			continue
		}
		name := key + "-committed"
		if i == len(fine)-1 {
			name = strings.Repeat("n", snapshots.MaxKeyLength-16)
		}
		if err := sn.Commit(c, name, key); err != nil {
			t.Errorf("Commit(%.40q): %v", name, err)
			continue
		}
		if _, err := sn.View(c, key, name); err != nil {
			t.Errorf("View(%.40q): %v", key, err)
		}
		if info, err := sn.Stat(c, key); err != nil || info.Name != key || info.Parent != name {
			t.Errorf("Stat(%.40q) = %+v, %v", key, info, err)
		}
	}
	for _, key := range []string{"", "nul\x00byte", "bad\xffutf8", strings.Repeat("k", snapshots.MaxKeyLength+1)} {
		if _, err := sn.Prepare(c, key, ""); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Prepare(%.40q): %v, want invalid argument", key, err)
		}
	}
	// No key reached the file system: the root holds nothing the keys
	// name, anywhere below it.
	err := filepath.WalkDir(e.root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		for _, bad := range []string{"passwd", "absolute", "sha256", "ünïcødé", "%2e"} {
			if strings.Contains(d.Name(), bad) {
				t.Errorf("%s is named after a key", path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/absolute"); err == nil {
		t.Errorf("/absolute exists")
	}
}

// testLongChain stacks layers until the lower folders of an overlay are
// longer than a page, and mounts the top of the chain.
func testLongChain(t *testing.T, e *env) {
	testutil.RequireRoot(t)
	sn := e.sn
	const layers = 100
	parent := ""
	want := map[string]string{}
	for i := range layers {
		name := fmt.Sprintf("sha256:%064d", i)
		prepareWith(t, sn, name, fmt.Sprintf("extract-%d", i), parent, func(dir string) {
			writeFile(t, filepath.Join(dir, fmt.Sprintf("f%02d", i)), name)
		})
		want[fmt.Sprintf("f%02d", i)] = name
		parent = name
	}
	for _, kind := range []string{"view", "active"} {
		var mounts []mount.Mount
		var err error
		if kind == "view" {
			mounts, err = sn.View(ctx(), "top-view", parent)
		} else {
			mounts, err = sn.Prepare(ctx(), "top-active", parent)
		}
		if err != nil {
			t.Fatal(err)
		}
		dir, _ := mountAt(t, mounts)
		checkFiles(t, dir, want)
	}
}
