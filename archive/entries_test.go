package archive_test

import (
	"archive/tar"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/archive"
	"github.com/berthrt/berth/internal/testutil"
)

// defaultACL is a system.posix_acl_default value (version 2): owner rwx,
// group r-x, others nothing.
func defaultACL() string {
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range []struct{ tag, perm uint16 }{{0x01, 7}, {0x04, 5}, {0x20, 0}} {
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.perm)
		b = binary.LittleEndian.AppendUint32(b, 0xffffffff)
	}
	return string(b)
}

// TestApplyModesAndOwners checks that every file and folder gets the
// mode and owner of its entry whether Apply makes it with its final mode
// or sets it apart: modes the umask would mask, special bits, other
// owners, setgid folders (their group and bit are inherited), a folder
// with a default ACL (it masks a new file's mode instead of the umask).
func TestApplyModesAndOwners(t *testing.T) {
	testutil.RequireRoot(t)
	old := unix.Umask(0o022)
	defer unix.Umask(old)
	with := func(e ent, mode int64, uid, gid int) ent {
		e.hdr.Mode, e.hdr.Uid, e.hdr.Gid = mode, uid, gid
		return e
	}
	acl := dir("acl/")
	acl.hdr.Format = tar.FormatPAX
	acl.hdr.PAXRecords = map[string]string{"SCHILY.xattr.system.posix_acl_default": defaultACL()}
	entries := []ent{
		dir("plain/"),
		file("plain/a", "a"),
		with(file("plain/b", "b"), 0o666, 0, 0),
		with(file("plain/c", "c"), 0o400, 0, 0),
		with(file("plain/x", "x"), 0o755, 1000, 1000),
		with(file("plain/s", "s"), 0o4755, 0, 0),
		with(dir("plain/d/"), 0o777, 0, 0),
		with(dir("sg/"), 0o2775, 0, 50),
		file("sg/f", "f"),
		dir("sg/sub/"),
		file("sg/sub/f", "f"),
		with(dir("sg0/"), 0o2775, 0, 0),
		dir("sg0/sub/"),
		acl,
		file("acl/f", "f"),
		dir("acl/d/"),
	}
	want := map[string]struct {
		mode     uint32
		uid, gid uint32
	}{
		"plain/a": {0o644, 0, 0}, "plain/b": {0o666, 0, 0}, "plain/c": {0o400, 0, 0},
		"plain/x": {0o755, 1000, 1000}, "plain/s": {0o4755, 0, 0}, "plain/d": {0o777, 0, 0},
		"sg": {0o2775, 0, 50}, "sg/f": {0o644, 0, 0}, "sg/sub": {0o755, 0, 0}, "sg/sub/f": {0o644, 0, 0},
		"sg0/sub": {0o755, 0, 0},
		"acl/f":   {0o644, 0, 0}, "acl/d": {0o755, 0, 0},
	}
	root := t.TempDir()
	if err := apply(t, root, tarOf(t, entries...)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	_, aclErr := unix.Lgetxattr(filepath.Join(root, "acl"), "system.posix_acl_default", buf)
	for name, w := range want {
		st := statT(t, filepath.Join(root, name))
		if st.Mode&0o7777 != w.mode || st.Uid != w.uid || st.Gid != w.gid {
			t.Errorf("%s: mode %o uid %d gid %d, want mode %o uid %d gid %d", name, st.Mode&0o7777, st.Uid, st.Gid, w.mode, w.uid, w.gid)
		}
	}
	// Without default ACLs on the test's filesystem the acl/ case checked
	// nothing: that may pass outside CI only, saying so.
	testutil.Require(t, aclErr == nil, fmt.Sprintf("the temporary folder's filesystem keeps no default ACL (%v), so the ACL case could not check anything", aclErr))
}

// TestApplyReplaces checks that a later entry replaces an earlier one of
// the same name, of any type, without following a symlink it replaces,
// and that a whiteout that removes the folder the entries before it were
// in sends the entries after it into a new folder of that name.
func TestApplyReplaces(t *testing.T) {
	testutil.RequireRoot(t)
	root := t.TempDir()
	layer := tarOf(t,
		dir("r/"),
		file("r/f1", "file"), dir("r/f1/"), // a file replaced by a folder
		dir("r/d1/"), file("r/d1/x", "x"), file("r/d1", "now a file"), // a folder by a file
		symlink("r/l", "/outside"), file("r/l", "not through the link"), // a symlink by a file
		file("r/h", "h"), file("r/h2", "h2"), hardlink("r/h2", "r/h"), // a file by a hardlink
		file("r/h", "h again"), // a hardlink's name by a file
		dir("w/a/b/"), file("w/a/b/f", "f"),
		file("w/.wh.a", ""),
		file("w/a/b/g", "g"),
	)
	if err := apply(t, root, layer); err != nil {
		t.Fatal(err)
	}
	typ := func(name string) uint32 {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(root, name), &st); err != nil {
			return 0
		}
		return st.Mode & unix.S_IFMT
	}
	read := func(name string) string {
		data, _ := os.ReadFile(filepath.Join(root, name))
		return string(data)
	}
	checks := []struct {
		name string
		ok   bool
	}{
		{"r/f1 is a folder", typ("r/f1") == unix.S_IFDIR},
		{"r/d1 is a file", typ("r/d1") == unix.S_IFREG && read("r/d1") == "now a file"},
		{"r/l is a file", typ("r/l") == unix.S_IFREG && read("r/l") == "not through the link"},
		{"r/h2 is r/h's first inode", statT(t, filepath.Join(root, "r/h2")).Nlink == 1 && read("r/h2") == "h"},
		{"r/h is new", read("r/h") == "h again"},
		{"w/a/b/f is gone", typ("w/a/b/f") == 0},
		{"w/a/b/g is there", read("w/a/b/g") == "g"},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: not so; tree: %v", c.name, names(t, root))
		}
	}
	if _, err := os.Lstat("/outside"); err == nil {
		t.Error("/outside exists")
	}
}

// TestMadeParentsInherit checks WithMadeParents and InheritParents: the
// folders a layer only implies are reported (not those it describes) and
// take their lower folder's metadata afterwards, and a reported name that
// the layer replaced with a symlink, or that one now leads through, is
// left alone.
func TestMadeParentsInherit(t *testing.T) {
	testutil.RequireRoot(t)
	base := t.TempDir()
	lower, root, outside := filepath.Join(base, "lower"), filepath.Join(base, "root"), filepath.Join(base, "outside")
	for _, d := range []string{lower + "/a/b", lower + "/l/x", root, outside + "/x"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(lower+"/a", 0o710); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(lower+"/a", 7, 8); err != nil {
		t.Fatal(err)
	}
	os.Chmod(lower+"/l/x", 0o700)
	var made []string
	layer := tarOf(t, file("a/b/f", "f"), dir("c/"), file("c/d/f", "f"), file("l/x/f", "f"), symlink("l", "../outside"))
	if err := apply(t, root, layer, archive.WithConvention(archive.Overlay), archive.WithMadeParents(func(n []string) { made = n })); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "a/b", "c/d", "l", "l/x"}; !slices.Equal(made, want) {
		t.Errorf("made %q, want %q", made, want)
	}
	if err := archive.InheritParents(root, []string{lower}, made); err != nil {
		t.Fatal(err)
	}
	if st := statT(t, root+"/a"); st.Mode&0o7777 != 0o710 || st.Uid != 7 || st.Gid != 8 {
		t.Errorf("a: mode %o uid %d gid %d, want the lower's 710 7 8", st.Mode&0o7777, st.Uid, st.Gid)
	}
	if st := statT(t, outside+"/x"); st.Mode&0o7777 != 0o755 {
		t.Errorf("outside/x: mode %o: changed through a symlink", st.Mode&0o7777)
	}
}
