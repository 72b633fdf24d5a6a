package archive_test

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ent is one tar entry to write: its header and, for a file, its body.
type ent struct {
	hdr  tar.Header
	body string
}

func file(name, body string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(1700000000, 0)}, body: body}
}

func dir(name string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: time.Unix(1700000000, 0)}}
}

func symlink(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, ModTime: time.Unix(1700000000, 0)}}
}

func hardlink(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, ModTime: time.Unix(1700000000, 0)}}
}

// tarOf writes entries into a tar.
func tarOf(t testing.TB, entries ...ent) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("write header %q: %v", h.Name, err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// sandbox is a folder holding root (where layers go) beside a sentinel
// folder; check verifies that nothing outside root changed.
type sandbox struct {
	base, root, outside string
	before              map[string]string
}

// hostPaths are absolute paths the malicious layers aim at; none may
// appear.
var hostPaths = []string{"/etc/x", "/tmp/outside", "/x", "/evil", "/tmp/berth-evil"}

func newSandbox(t testing.TB) *sandbox {
	t.Helper()
	base := t.TempDir()
	s := &sandbox{base: base, root: filepath.Join(base, "root"), outside: filepath.Join(base, "outside")}
	for _, d := range []string{s.root, s.outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.outside, "sentinel"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range hostPaths {
		if _, err := os.Lstat(p); err == nil {
			t.Fatalf("%s exists before the test; remove it", p)
		}
	}
	s.before = snapshot(t, base, s.root)
	return s
}

// check fails the test if anything outside root was made or changed.
func (s *sandbox) check(t testing.TB) {
	t.Helper()
	after := snapshot(t, s.base, s.root)
	if !maps2Equal(s.before, after) {
		t.Errorf("outside root changed:\nbefore %v\nafter  %v", s.before, after)
	}
	for _, p := range hostPaths {
		if _, err := os.Lstat(p); err == nil {
			os.RemoveAll(p)
			t.Errorf("%s was created on the host", p)
		}
	}
}

func maps2Equal(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// snapshot describes every entry under base except skip's subtree.
func snapshot(t testing.TB, base, skip string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == skip {
			return filepath.SkipDir
		}
		if p == base {
			return nil
		}
		out[p] = describe(t, p, false)
		return nil
	})
	return out
}

// describe is what treeEqual compares of one entry: type, mode, owner,
// content or target, mtime (to the second, as layers carry it; folders
// only when withDirTimes) and kept xattrs.
func describe(t testing.TB, p string, withDirTimes bool) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	s := fmt.Sprintf("mode=%o uid=%d gid=%d", st.Mode, st.Uid, st.Gid)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		s += fmt.Sprintf(" sha=%x mtime=%d", sha256.Sum256(data), st.Mtim.Sec)
	case unix.S_IFLNK:
		target, _ := os.Readlink(p)
		s += " -> " + target + fmt.Sprintf(" mtime=%d", st.Mtim.Sec)
	case unix.S_IFCHR, unix.S_IFBLK:
		s += fmt.Sprintf(" rdev=%d", st.Rdev)
	case unix.S_IFDIR:
		if withDirTimes {
			s += fmt.Sprintf(" mtime=%d", st.Mtim.Sec)
		}
	}
	for _, x := range []string{"user.test", "security.capability"} {
		buf := make([]byte, 256)
		if n, err := unix.Lgetxattr(p, x, buf); err == nil {
			s += fmt.Sprintf(" %s=%q", x, buf[:n])
		}
	}
	return s
}

// tree describes every entry under root by its relative path.
func tree(t testing.TB, root string, withDirTimes bool) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = describe(t, p, withDirTimes)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// treeEqual fails the test when the trees a and b differ.
func treeEqual(t testing.TB, a, b string) {
	t.Helper()
	ta, tb := tree(t, a, true), tree(t, b, true)
	var diffs []string
	for k, v := range ta {
		if w, ok := tb[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("only in %s: %s", a, k))
		} else if v != w {
			diffs = append(diffs, fmt.Sprintf("%s: %s != %s", k, v, w))
		}
	}
	for k := range tb {
		if _, ok := ta[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("only in %s: %s", b, k))
		}
	}
	slices.Sort(diffs)
	if len(diffs) > 0 {
		t.Errorf("trees differ:\n%s", strings.Join(diffs, "\n"))
	}
}

// names lists the paths under root, folders with a trailing slash.
func names(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			rel += "/"
		}
		out = append(out, rel)
		return nil
	})
	slices.Sort(out)
	return out
}

func statT(t testing.TB, p string) *syscall.Stat_t {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t)
}

// exec runs a command and returns its standard output.
func exec(t testing.TB, name string, args ...string) ([]byte, error) {
	t.Helper()
	return osexec.Command(name, args...).Output()
}
