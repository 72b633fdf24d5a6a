package archive_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/archive"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/mount"
)

func apply(t testing.TB, root string, layer []byte, opts ...archive.ApplyOpt) error {
	t.Helper()
	n, err := archive.Apply(context.Background(), root, bytes.NewReader(layer), opts...)
	if err == nil && n != int64(len(layer)) {
		t.Errorf("Apply read %d bytes of %d", n, len(layer))
	}
	return err
}

// TestApplyMalicious applies crafted layers; each must leave everything
// outside root as it was, and either fail or land inside root.
func TestApplyMalicious(t *testing.T) {
	testutil.RequireRoot(t)
	long := strings.Repeat("a/", 3000) + "f"
	many := make([]ent, 0, 70)
	for i := range 70 {
		many = append(many, file("f"+strings.Repeat("x", i), ""))
	}
	bigXattr := file("x", "")
	bigXattr.hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.big": strings.Repeat("v", 70<<10)}
	dev := ent{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "sda", Mode: 0o600, Devmajor: 8, Devminor: 0}}
	tests := []struct {
		name    string
		entries []ent
		opts    []archive.ApplyOpt
		wantErr bool
		inside  []string // paths that must exist in root afterwards
		absent  []string // paths that must not
	}{
		{name: "dotdot", entries: []ent{file("../../etc/x", "x")}, wantErr: true},
		{name: "dotdot inside", entries: []ent{file("a/../../outside/x", "x")}, wantErr: true},
		{name: "absolute", entries: []ent{file("/etc/x", "x")}, inside: []string{"etc/x"}},
		{name: "symlink out then through", entries: []ent{symlink("evil", "/tmp/outside"), file("evil/file", "x")}, inside: []string{"tmp/outside/file"}},
		{name: "relative symlink out", entries: []ent{symlink("evil", "../outside"), file("evil/sentinel", "x")}, inside: []string{"outside/sentinel"}},
		{name: "symlink chain", entries: []ent{symlink("a", "../../../.."), symlink("b", "a/etc"), file("b/x", "x")}, inside: []string{"etc/x"}},
		{name: "symlink chain to dir out", entries: []ent{symlink("a", "../outside"), symlink("b", "a"), dir("b/sub/"), file("b/sub/f", "x")}, inside: []string{"outside/sub/f"}},
		{name: "hardlink to host passwd", entries: []ent{hardlink("passwd", "/etc/passwd")}, wantErr: true, absent: []string{"passwd"}},
		{name: "hardlink dotdot", entries: []ent{hardlink("l", "../outside/sentinel")}, wantErr: true},
		{name: "hardlink through symlink", entries: []ent{symlink("evil", "../outside"), hardlink("l", "evil/sentinel")}, wantErr: true, absent: []string{"l"}},
		{name: "dir replaced by symlink", entries: []ent{dir("d/"), file("d/a", "x"), symlink("d", "/tmp/outside"), file("d/b", "x")}, inside: []string{"tmp/outside/b"}, absent: []string{"d/a"}},
		{name: "dangling symlink dir", entries: []ent{symlink("d", "../../tmp/berth-evil"), file("d/f", "x")}, inside: []string{"tmp/berth-evil/f"}},
		{name: "whiteout dotdot", entries: []ent{file(".wh..", "")}, wantErr: true},
		{name: "whiteout into dotdot", entries: []ent{file("a/../../.wh.outside", "")}, wantErr: true},
		{name: "whiteout through symlink", entries: []ent{symlink("evil", "../outside"), file("evil/.wh.sentinel", "")}},
		{name: "opaque through symlink", entries: []ent{symlink("evil", "../outside"), file("evil/.wh..wh..opq", "")}},
		{name: "overlay whiteout through symlink", entries: []ent{symlink("evil", "../outside"), file("evil/.wh.sentinel", "")}, opts: []archive.ApplyOpt{archive.WithConvention(archive.Overlay)}, inside: []string{"outside/sentinel"}},
		{name: "device refused by default", entries: []ent{dev}, absent: []string{"sda"}},
		{name: "name too long", entries: []ent{file(long, "x")}, wantErr: true},
		{name: "too many entries", entries: many, opts: []archive.ApplyOpt{archive.WithLimits(archive.Limits{MaxEntries: 64})}, wantErr: true},
		{name: "xattr too big", entries: []ent{bigXattr}, wantErr: true},
		{name: "symlink over existing file target", entries: []ent{file("f", "x"), symlink("f", "/etc/passwd"), file("f", "y")}, inside: []string{"f"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSandbox(t)
			layer := tarOf(t, tc.entries...)
			err := apply(t, s.root, layer, tc.opts...)
			if tc.wantErr {
				if err == nil {
					t.Errorf("Apply succeeded; tree %v", names(t, s.root))
				} else if !errdefs.IsInvalidArgument(err) && !errors.Is(err, unix.ENOENT) {
					t.Logf("error (not InvalidArgument): %v", err)
				}
			} else if err != nil {
				t.Errorf("Apply: %v", err)
			}
			for _, p := range tc.inside {
				if _, err := os.Lstat(filepath.Join(s.root, p)); err != nil {
					t.Errorf("%s not in root: %v (tree %v)", p, err, names(t, s.root))
				}
			}
			for _, p := range tc.absent {
				if _, err := os.Lstat(filepath.Join(s.root, p)); err == nil {
					t.Errorf("%s is in root", p)
				}
			}
			s.check(t)
		})
	}
}

// TestApplyNULName writes a ustar name with a NUL in it by hand: the tar
// reader cuts it there, and nothing lands outside.
func TestApplyNULName(t *testing.T) {
	s := newSandbox(t)
	layer := tarOf(t, file("aaaaaaaaaaaa", "x"))
	copy(layer[0:], "ok\x00/../../x")
	hdrChecksum(layer[:512])
	if err := apply(t, s.root, layer); err != nil {
		t.Logf("Apply: %v", err)
	}
	if got := names(t, s.root); len(got) > 1 || (len(got) == 1 && got[0] != "ok") {
		t.Errorf("tree %v", got)
	}
	s.check(t)
}

// hdrChecksum recomputes a ustar header block's checksum.
func hdrChecksum(b []byte) {
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
}

func TestApplySetuidAndDevicesPolicy(t *testing.T) {
	testutil.RequireRoot(t)
	suid := file("su", "#!")
	suid.hdr.Mode = 0o4755
	sgid := file("wall", "#!")
	sgid.hdr.Mode = 0o2755
	null := ent{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "null", Mode: 0o666, Devmajor: 1, Devminor: 3}}
	fifo := ent{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "fifo", Mode: 0o600}}
	layer := tarOf(t, suid, sgid, null, fifo)

	root := t.TempDir()
	if err := apply(t, root, layer); err != nil {
		t.Fatal(err)
	}
	if m := statT(t, filepath.Join(root, "su")).Mode; m&0o7777 != 0o4755 {
		t.Errorf("setuid file mode %o", m)
	}
	if m := statT(t, filepath.Join(root, "wall")).Mode; m&0o7777 != 0o2755 {
		t.Errorf("setgid file mode %o", m)
	}
	if _, err := os.Lstat(filepath.Join(root, "null")); err == nil {
		t.Error("a device was made without WithDevices")
	}
	if m := statT(t, filepath.Join(root, "fifo")).Mode; m&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("fifo mode %o", m)
	}

	root = t.TempDir()
	if err := apply(t, root, layer, archive.WithDevices(), archive.WithoutSetuid()); err != nil {
		t.Fatal(err)
	}
	if m := statT(t, filepath.Join(root, "su")).Mode; m&0o7777 != 0o755 {
		t.Errorf("WithoutSetuid: mode %o", m)
	}
	if st := statT(t, filepath.Join(root, "null")); st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) || st.Mode&0o777 != 0o666 {
		t.Errorf("WithDevices: null mode %o rdev %d", st.Mode, st.Rdev)
	}
}

func TestApplyMetadata(t *testing.T) {
	testutil.RequireRoot(t)
	mtime, atime := time.Unix(1600000000, 123456789), time.Unix(1650000000, 5)
	f := file("d/f", "data")
	f.hdr.Uid, f.hdr.Gid, f.hdr.Mode, f.hdr.ModTime, f.hdr.AccessTime = 1000, 2000, 0o4750, mtime, atime
	f.hdr.Format = tar.FormatPAX
	capV3 := "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" // cap_net_bind_service, permitted
	f.hdr.PAXRecords = map[string]string{
		"SCHILY.xattr.user.test":              "yes",
		"SCHILY.xattr.security.capability":    capV3,
		"SCHILY.xattr.trusted.overlay.opaque": "y",
		"SCHILY.xattr.security.selinux":       "system_u:object_r:bin_t:s0",
	}
	d := dir("d/")
	d.hdr.Uid, d.hdr.Gid, d.hdr.Mode, d.hdr.ModTime = 3, 4, 0o710, mtime
	d.hdr.Format = tar.FormatPAX
	l := symlink("d/l", "f")
	l.hdr.Uid, l.hdr.ModTime = 5, mtime
	l.hdr.Format = tar.FormatPAX
	root := t.TempDir()
	if err := apply(t, root, tarOf(t, d, f, l, hardlink("d/h", "d/f"))); err != nil {
		t.Fatal(err)
	}
	st := statT(t, filepath.Join(root, "d/f"))
	if st.Uid != 1000 || st.Gid != 2000 || st.Mode&0o7777 != 0o4750 {
		t.Errorf("file: uid %d gid %d mode %o", st.Uid, st.Gid, st.Mode)
	}
	if st.Mtim.Nano() != mtime.UnixNano() || st.Atim.Nano() != atime.UnixNano() {
		t.Errorf("file times %v %v", time.Unix(st.Mtim.Unix()), time.Unix(st.Atim.Unix()))
	}
	buf := make([]byte, 128)
	if n, err := unix.Lgetxattr(filepath.Join(root, "d/f"), "user.test", buf); err != nil || string(buf[:n]) != "yes" {
		t.Errorf("user.test: %q %v", buf[:n], err)
	}
	if n, err := unix.Lgetxattr(filepath.Join(root, "d/f"), "security.capability", buf); err != nil || string(buf[:n]) != capV3 {
		t.Errorf("security.capability: %q %v", buf[:n], err)
	}
	for _, x := range []string{"trusted.overlay.opaque", "security.selinux"} {
		if _, err := unix.Lgetxattr(filepath.Join(root, "d/f"), x, buf); err == nil && x != "security.selinux" {
			t.Errorf("%s was kept", x)
		}
	}
	st = statT(t, filepath.Join(root, "d"))
	if st.Uid != 3 || st.Gid != 4 || st.Mode&0o7777 != 0o710 || st.Mtim.Nano() != mtime.UnixNano() {
		t.Errorf("dir: uid %d gid %d mode %o mtime %v", st.Uid, st.Gid, st.Mode, time.Unix(st.Mtim.Unix()))
	}
	st = statT(t, filepath.Join(root, "d/l"))
	if st.Uid != 5 || st.Mtim.Nano() != mtime.UnixNano() {
		t.Errorf("symlink: uid %d mtime %v", st.Uid, time.Unix(st.Mtim.Unix()))
	}
	if a, b := statT(t, filepath.Join(root, "d/f")), statT(t, filepath.Join(root, "d/h")); a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("hardlink: inodes %d %d nlink %d", a.Ino, b.Ino, a.Nlink)
	}
}

func TestApplySparseAndLongNames(t *testing.T) {
	long := strings.Repeat("n", 200) + "/" + strings.Repeat("m", 250)
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: long, Size: 1, Mode: 0o644})
	tw.Write([]byte("x"))
	tw.Close()
	root := t.TempDir()
	if err := apply(t, root, b.Bytes()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, long)); err != nil {
		t.Error(err)
	}
	// A GNU sparse file (PAX 1.0) made by GNU tar if it is here.
	_, err := exec(t, "tar", "--version")
	testutil.Require(t, err == nil, "GNU tar not found (it makes the sparse file)")
	src := t.TempDir()
	f, _ := os.Create(filepath.Join(src, "sparse"))
	f.WriteAt([]byte("end"), 64<<20)
	f.Close()
	out, err := exec(t, "tar", "-C", src, "--sparse", "--format=pax", "-cf", "-", "sparse")
	if err != nil {
		t.Fatal(err)
	}
	if err := apply(t, root, out); err != nil {
		t.Fatal(err)
	}
	st := statT(t, filepath.Join(root, "sparse"))
	if st.Size != 64<<20+3 || st.Blocks*512 > 1<<20 {
		t.Errorf("sparse: size %d, %d bytes allocated", st.Size, st.Blocks*512)
	}
	if err := apply(t, t.TempDir(), out, archive.WithLimits(archive.Limits{MaxSparseSize: 1 << 20})); !errdefs.IsInvalidArgument(err) {
		t.Errorf("sparse over the limit: %v", err)
	}
}

// layers are three layers with deletions and an opaque folder.
func layers(t testing.TB) [][]byte {
	return [][]byte{
		tarOf(t, dir("a/"), file("a/f1", "1"), file("a/f2", "2"), dir("b/"), file("b/x", "x"), dir("b/sub/"), file("b/sub/y", "y"), dir("c/"), file("c/keep", "k"), file("d", "d")),
		tarOf(t, dir("a/"), file("a/.wh.f1", ""), dir("b/"), file("b/.wh..wh..opq", ""), file("b/y", "y2"), file(".wh.d", ""), dir("c/"), file("c/new", "n")),
		tarOf(t, dir("a/"), file("a/f1", "1 again"), symlink("e", "a/f2"), dir("b/"), file("b/z", "z"), file("c/.wh.keep", "")),
	}
}

var wantVisible = []string{"a/", "a/f1", "a/f2", "b/", "b/y", "b/z", "c/", "c/new", "e"}

func TestApplyWhiteoutsPlain(t *testing.T) {
	testutil.RequireRoot(t)
	root := t.TempDir()
	for i, l := range layers(t) {
		if err := apply(t, root, l); err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
	}
	if got := names(t, root); !slices.Equal(got, wantVisible) {
		t.Errorf("tree %v, want %v", got, wantVisible)
	}
	if data, _ := os.ReadFile(filepath.Join(root, "b/y")); string(data) != "y2" {
		t.Errorf("b/y = %q", data)
	}
}

func TestApplyWhiteoutsOverlay(t *testing.T) {
	testutil.RequireRoot(t)
	base := t.TempDir()
	var uppers []string // topmost first
	for i, l := range layers(t) {
		upper := filepath.Join(base, "l"+string(rune('0'+i)))
		if err := os.Mkdir(upper, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := apply(t, upper, l, archive.WithConvention(archive.Overlay), archive.WithParents(uppers...)); err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		uppers = append([]string{upper}, uppers...)
	}
	if st := statT(t, filepath.Join(uppers[1], "a/f1")); st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("a/f1 in layer 1 is not a whiteout: mode %o", st.Mode)
	}
	buf := make([]byte, 8)
	if n, err := unix.Getxattr(filepath.Join(uppers[1], "b"), "trusted.overlay.opaque", buf); err != nil || string(buf[:n]) != "y" {
		t.Errorf("b in layer 1 is not opaque: %q %v", buf[:n], err)
	}
	target := filepath.Join(base, "merged")
	os.Mkdir(target, 0o755)
	m := mount.Mount{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=" + strings.Join(uppers, ":")}}
	if err := m.Mount(target); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := mount.UnmountAll(target, 0); err != nil {
			t.Error(err)
		}
	})
	if got := names(t, target); !slices.Equal(got, wantVisible) {
		t.Errorf("merged tree %v, want %v", got, wantVisible)
	}
	if data, _ := os.ReadFile(filepath.Join(target, "a/f1")); string(data) != "1 again" {
		t.Errorf("a/f1 = %q", data)
	}
}

// TestApplyOverlayParents: a layer that names a file in a folder it does
// not carry makes that folder with the lower layer's metadata, and a
// hardlink to a lower file copies it up.
func TestApplyOverlayParents(t *testing.T) {
	testutil.RequireRoot(t)
	lower, upper := t.TempDir(), t.TempDir()
	d := dir("p/")
	d.hdr.Mode, d.hdr.Uid = 0o700, 7
	if err := apply(t, lower, tarOf(t, d, file("p/orig", "o"))); err != nil {
		t.Fatal(err)
	}
	if err := apply(t, upper, tarOf(t, file("p/new", "n"), hardlink("p/link", "p/orig")), archive.WithConvention(archive.Overlay), archive.WithParents(lower)); err != nil {
		t.Fatal(err)
	}
	if st := statT(t, filepath.Join(upper, "p")); st.Mode&0o7777 != 0o700 || st.Uid != 7 {
		t.Errorf("made parent: mode %o uid %d", st.Mode, st.Uid)
	}
	if data, err := os.ReadFile(filepath.Join(upper, "p/link")); err != nil || string(data) != "o" {
		t.Errorf("copied-up link: %q %v", data, err)
	}
}

func TestApplyCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := archive.Apply(ctx, t.TempDir(), bytes.NewReader(tarOf(t, file("f", "x")))); !errors.Is(err, context.Canceled) {
		t.Errorf("Apply: %v", err)
	}
}
