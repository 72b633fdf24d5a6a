package netns

import (
	"bufio"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/berthrt/berth/internal/testutil"
)

func newNetNS(t *testing.T, dir string) *NetNS {
	t.Helper()
	ns, err := New(dir)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := ns.Remove(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return ns
}

func TestNewDoRemove(t *testing.T) {
	testutil.RequireRoot(t)
	dir := filepath.Join(t.TempDir(), "netns")
	ns := newNetNS(t, dir)

	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("netns folder: %v, %v; want mode 0700", fi.Mode(), err)
	}
	if filepath.Dir(ns.Path()) != dir {
		t.Fatalf("Path %s not in %s", ns.Path(), dir)
	}
	if !isMountPoint(t, ns.Path()) {
		t.Fatalf("%s is not a mount point", ns.Path())
	}
	if closed, err := ns.Closed(); err != nil || closed {
		t.Fatalf("Closed = %v, %v; want false", closed, err)
	}

	host := readNetNSLink(t, "/proc/thread-self/ns/net")
	var inside string
	var names []string
	err := ns.Do(func() error {
		inside = readNetNSLink(t, "/proc/thread-self/ns/net")
		ifs, err := net.Interfaces()
		for _, i := range ifs {
			names = append(names, i.Name)
		}
		return err
	})
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	if inside == host {
		t.Fatalf("Do ran in the host's namespace %s", host)
	}
	if strings.Join(names, ",") != "lo" {
		t.Fatalf("links in a new netns: %v, want only lo", names)
	}
	sentinel := errors.New("from fn")
	if err := ns.Do(func() error { return sentinel }); !errors.Is(err, sentinel) {
		t.Fatalf("Do returned %v, want fn's error", err)
	}

	for i := 0; i < 2; i++ {
		if err := ns.Remove(); err != nil {
			t.Fatalf("Remove #%d: %v", i+1, err)
		}
	}
	if _, err := os.Lstat(ns.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pin file after Remove: %v", err)
	}
	if isMountPoint(t, ns.Path()) {
		t.Fatalf("%s still mounted after Remove", ns.Path())
	}
	if closed, err := ns.Closed(); err != nil || !closed {
		t.Fatalf("Closed after Remove = %v, %v; want true", closed, err)
	}
	if err := ns.Do(func() error { return nil }); err == nil {
		t.Fatal("Do in a removed netns succeeded")
	}
}

// TestLoad: a namespace found again by its path (after a daemon restart) is
// the same namespace, and removing it through Load works.
func TestLoad(t *testing.T) {
	testutil.RequireRoot(t)
	ns := newNetNS(t, t.TempDir())
	var want, got string
	if err := ns.Do(func() error { want = readNetNSLink(t, "/proc/thread-self/ns/net"); return nil }); err != nil {
		t.Fatal(err)
	}
	loaded := Load(ns.Path())
	if loaded.Path() != ns.Path() {
		t.Fatalf("Load path %s, want %s", loaded.Path(), ns.Path())
	}
	if err := loaded.Do(func() error { got = readNetNSLink(t, "/proc/thread-self/ns/net"); return nil }); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("loaded netns is %s, want %s", got, want)
	}
	if err := loaded.Remove(); err != nil {
		t.Fatal(err)
	}
	if closed, _ := ns.Closed(); !closed {
		t.Fatal("namespace not closed after removing it through Load")
	}
}

// TestClosedNotANamespace: a path holding a plain file (the pin unmounted by
// someone else) or nothing is closed, Do refuses it, Remove tidies it.
func TestClosedNotANamespace(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{plain, filepath.Join(dir, "absent")} {
		ns := Load(path)
		if closed, err := ns.Closed(); err != nil || !closed {
			t.Errorf("%s: Closed = %v, %v; want true", path, closed, err)
		}
		if err := ns.Do(func() error { return nil }); err == nil {
			t.Errorf("%s: Do succeeded", path)
		}
		if err := ns.Remove(); err != nil {
			t.Errorf("%s: Remove: %v", path, err)
		}
	}
	if _, err := os.Lstat(plain); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Remove left the plain file: %v", err)
	}
	if _, err := New("relative"); err == nil {
		t.Fatal("New accepted a relative folder")
	}
}

// TestNoThreadLeftInANamespace: after many concurrent New, Do and Remove,
// every thread of the process is in the namespace it started in.
func TestNoThreadLeftInANamespace(t *testing.T) {
	testutil.RequireRoot(t)
	host := readNetNSLink(t, "/proc/self/ns/net")
	dir := t.TempDir()
	var wg sync.WaitGroup
	errc := make(chan error, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ns, err := New(dir)
			if err != nil {
				errc <- err
				return
			}
			errc <- errors.Join(ns.Do(func() error { return nil }), ns.Remove())
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Fatal(err)
		}
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		link, err := os.Readlink(filepath.Join("/proc/self/task", task.Name(), "ns/net"))
		if errors.Is(err, os.ErrNotExist) {
			continue // the thread ended meanwhile
		}
		if err != nil {
			t.Fatal(err)
		}
		if link != host {
			t.Errorf("thread %s is in %s, want %s", task.Name(), link, host)
		}
	}
}

func readNetNSLink(t *testing.T, path string) string {
	t.Helper()
	link, err := os.Readlink(path)
	if err != nil {
		t.Fatal(err)
	}
	return link
}

// isMountPoint reads /proc/self/mountinfo (field 5 is the mount point).
func isMountPoint(t *testing.T, path string) bool {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && fields[4] == path {
			return true
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return false
}
