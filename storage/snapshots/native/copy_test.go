package native

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/internal/testutil"
)

func TestCopyTreeKeepsEverything(t *testing.T) {
	testutil.RequireRoot(t)
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "copy")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "dir/sub"), 0o750))
	must(os.WriteFile(filepath.Join(src, "dir/setuid"), []byte("x"), 0o644))
	must(os.Chown(filepath.Join(src, "dir/setuid"), 1000, 1001))
	must(unix.Chmod(filepath.Join(src, "dir/setuid"), 0o4755)) // os.Chmod drops 0o4000
	must(os.Link(filepath.Join(src, "dir/setuid"), filepath.Join(src, "hardlink")))
	must(os.Symlink("../../etc/passwd", filepath.Join(src, "dir/sub/link")))
	must(unix.Mknod(filepath.Join(src, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(unix.Mknod(filepath.Join(src, "whiteout"), unix.S_IFCHR, 0))
	must(unix.Mkfifo(filepath.Join(src, "fifo"), 0o600))
	must(unix.Setxattr(filepath.Join(src, "dir"), "trusted.overlay.opaque", []byte("y"), 0))
	must(unix.Setxattr(filepath.Join(src, "dir/setuid"), "user.note", []byte("kept"), 0))
	old := time.Date(2001, 2, 3, 4, 5, 6, 7000, time.UTC)
	for _, p := range []string{"dir/setuid", "dir/sub", "dir"} {
		must(os.Chtimes(filepath.Join(src, p), old, old))
	}

	must(CopyTree(dst, src))

	var st, st2 unix.Stat_t
	must(unix.Lstat(filepath.Join(dst, "dir/setuid"), &st))
	if st.Mode&0o7777 != 0o4755 || st.Uid != 1000 || st.Gid != 1001 {
		t.Errorf("setuid file: mode %#o owner %d:%d", st.Mode&0o7777, st.Uid, st.Gid)
	}
	if mt := time.Unix(st.Mtim.Unix()); !mt.Equal(old) {
		t.Errorf("mtime %v, want %v", mt, old)
	}
	must(unix.Lstat(filepath.Join(dst, "hardlink"), &st2))
	if st.Ino != st2.Ino {
		t.Error("hard link copied as two files")
	}
	if target, err := os.Readlink(filepath.Join(dst, "dir/sub/link")); err != nil || target != "../../etc/passwd" {
		t.Errorf("symlink = %q, %v", target, err)
	}
	must(unix.Lstat(filepath.Join(dst, "null"), &st))
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
		t.Errorf("device: mode %#o rdev %#x", st.Mode, st.Rdev)
	}
	must(unix.Lstat(filepath.Join(dst, "whiteout"), &st))
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("whiteout: mode %#o rdev %#x", st.Mode, st.Rdev)
	}
	must(unix.Lstat(filepath.Join(dst, "fifo"), &st))
	if st.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("fifo: mode %#o", st.Mode)
	}
	must(unix.Lstat(filepath.Join(dst, "dir"), &st))
	if st.Mode&0o7777 != 0o750 || !time.Unix(st.Mtim.Unix()).Equal(old) {
		t.Errorf("dir: mode %#o mtime %v", st.Mode&0o7777, time.Unix(st.Mtim.Unix()))
	}
	for path, attr := range map[string]string{"dir": "trusted.overlay.opaque", "dir/setuid": "user.note"} {
		buf := make([]byte, 16)
		n, err := unix.Lgetxattr(filepath.Join(dst, path), attr, buf)
		if err != nil || n == 0 {
			t.Errorf("%s: xattr %s: %v", path, attr, err)
		}
	}
}
