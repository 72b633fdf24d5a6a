package mount

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/internal/testenv"
)

// requireRoot skips on a developer's machine without root and fails in CI,
// where the tests must run.
func requireRoot(t *testing.T) {
	t.Helper()
	testenv.Require(t, os.Geteuid() == 0, "mount(2) needs root (CAP_SYS_ADMIN)")
}

// mountDir returns a new folder whose mounts are all removed at cleanup,
// before t.TempDir removes the folder.
func mountDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() {
		if err := UnmountAll(dir, 0); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return dir
}

// mountsUnder lists the mount points at and below dir.
func mountsUnder(t *testing.T, dir string) []*mountinfo.Info {
	t.Helper()
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		t.Fatal(err)
	}
	return mounts
}

func TestTmpfsAndUnmountAll(t *testing.T) {
	requireRoot(t)
	dir := mountDir(t)
	tmpfs := Mount{Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "size=1m", "mode=700"}}

	// Two stacked at dir, one nested below the top one, and one at a
	// deeper point hidden under a later mount at its parent.
	if err := tmpfs.Mount(dir); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"hidden/deeper", "hidden"} {
		p := filepath.Join(dir, sub)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := tmpfs.Mount(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := tmpfs.Mount(dir); err != nil {
		t.Fatal(err)
	}

	mounts := mountsUnder(t, dir)
	if len(mounts) != 4 {
		t.Fatalf("got %d mounts under %s, want 4", len(mounts), dir)
	}
	if m := mounts[0]; m.FSType != "tmpfs" || !strings.Contains(m.Options, "nosuid") || !strings.Contains(m.VFSOptions, "mode=700") {
		t.Errorf("mount = %s %q %q, want tmpfs with nosuid and mode=700", m.FSType, m.Options, m.VFSOptions)
	}

	if err := UnmountAll(dir, 0); err != nil {
		t.Fatal(err)
	}
	if left := mountsUnder(t, dir); len(left) != 0 {
		t.Errorf("%d mounts left after UnmountAll, first at %s", len(left), left[0].Mountpoint)
	}
	if err := UnmountAll(dir, 0); err != nil {
		t.Errorf("UnmountAll with nothing mounted: %v", err)
	}
	if err := UnmountAll(filepath.Join(dir, "missing"), 0); err != nil {
		t.Errorf("UnmountAll of a missing path: %v", err)
	}
}

func TestUnmountAllBusy(t *testing.T) {
	requireRoot(t)
	dir := mountDir(t)
	if err := (Mount{Type: "tmpfs", Source: "tmpfs", Options: []string{"size=1m"}}).Mount(dir); err != nil {
		t.Fatal(err)
	}
	// An open file keeps the mount busy: UnmountAll must fall back to a
	// lazy detach rather than fail.
	f, err := os.Create(filepath.Join(dir, "open"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })

	if err := UnmountAll(dir, 0); err != nil {
		t.Fatal(err)
	}
	if left := mountsUnder(t, dir); len(left) != 0 {
		t.Errorf("%d mounts left, first at %s", len(left), left[0].Mountpoint)
	}
}

func TestBindReadonly(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name string
		m    Mount
	}{
		{"type bind", Mount{Type: "bind", Options: []string{"ro"}}},
		{"rbind option", Mount{Type: "none", Options: []string{"rbind", "ro", "nosuid", "rprivate"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := t.TempDir()
			if err := os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o644); err != nil {
				t.Fatal(err)
			}
			dst := mountDir(t)
			tt.m.Source = src
			if err := tt.m.Mount(dst); err != nil {
				t.Fatal(err)
			}

			if b, err := os.ReadFile(filepath.Join(dst, "f")); err != nil || string(b) != "data" {
				t.Errorf("read through bind = %q, %v", b, err)
			}
			err := os.WriteFile(filepath.Join(dst, "new"), nil, 0o644)
			if !errors.Is(err, unix.EROFS) {
				t.Errorf("write to read-only bind: got %v, want EROFS", err)
			}
			if err := os.WriteFile(filepath.Join(src, "new"), nil, 0o644); err != nil {
				t.Errorf("source must stay writable: %v", err)
			}
		})
	}
}

func TestOverlay(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	lower, upper, work := filepath.Join(base, "lower"), filepath.Join(base, "upper"), filepath.Join(base, "work")
	for _, d := range []string{lower, upper, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(lower, "from-lower"), []byte("lower"), 0o644); err != nil {
		t.Fatal(err)
	}
	merged := mountDir(t)
	m := Mount{Type: "overlay", Source: "overlay", Options: []string{
		"lowerdir=" + lower, "upperdir=" + upper, "workdir=" + work,
	}}
	if err := m.Mount(merged); err != nil {
		t.Fatal(err)
	}

	if b, err := os.ReadFile(filepath.Join(merged, "from-lower")); err != nil || string(b) != "lower" {
		t.Errorf("lower file through overlay = %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(merged, "written"), []byte("up"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(upper, "written")); err != nil || string(b) != "up" {
		t.Errorf("write did not land in upper: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(lower, "written")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("write reached lower: %v", err)
	}
}

func TestAllStaysInsideRoot(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name   string
		link   string // a symlink "link" in root pointing here, if set
		target string
		want   string // where the mount must land, relative to root
	}{
		{name: "dotdot", target: "../../escape", want: "escape"},
		{name: "absolute symlink", link: "/", target: "link/etc", want: "etc"},
		{name: "relative symlink", link: "../../..", target: "link/up", want: "up"},
		{name: "root itself", target: "", want: ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			root := filepath.Join(parent, "a", "root")
			if err := os.MkdirAll(root, 0o755); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := UnmountAll(parent, 0); err != nil {
					t.Errorf("cleanup: %v", err)
				}
			})
			if tt.link != "" {
				if err := os.Symlink(tt.link, filepath.Join(root, "link")); err != nil {
					t.Fatal(err)
				}
			}

			// A source name no other mount has, to find ours wherever it went.
			source := fmt.Sprintf("berth-test-%d-%d", os.Getpid(), i)
			m := Mount{Type: "tmpfs", Source: source, Target: tt.target, Options: []string{"size=1m"}}
			if err := All([]Mount{m}, root); err != nil {
				t.Fatal(err)
			}
			mounts, err := mountinfo.GetMounts(func(mi *mountinfo.Info) (skip, stop bool) {
				return mi.Source != source, false
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(mounts) != 1 {
				t.Fatalf("got %d mounts of %s, want 1", len(mounts), source)
			}
			if want := filepath.Join(root, tt.want); mounts[0].Mountpoint != want {
				t.Errorf("mounted at %s, want %s", mounts[0].Mountpoint, want)
			}
		})
	}
}

func TestAllBindFile(t *testing.T) {
	requireRoot(t)
	src := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(src, []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := mountDir(t)
	mounts := []Mount{
		{Type: "tmpfs", Source: "tmpfs", Target: "run", Options: []string{"size=1m"}},
		{Type: "bind", Source: src, Target: "etc/resolv.conf", Options: []string{"ro"}},
	}
	if err := All(mounts, root); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "etc/resolv.conf")); err != nil || !strings.HasPrefix(string(b), "nameserver") {
		t.Errorf("bound file = %q, %v", b, err)
	}
	if got := len(mountsUnder(t, root)); got != 2 {
		t.Errorf("got %d mounts, want 2", got)
	}
}

func TestAllRollsBack(t *testing.T) {
	requireRoot(t)
	root := mountDir(t)
	mounts := []Mount{
		{Type: "tmpfs", Source: "tmpfs", Target: "first", Options: []string{"size=1m"}},
		{Type: "tmpfs", Source: "tmpfs", Target: "first/nested", Options: []string{"size=1m"}},
		{Type: "no-such-fs", Source: "none", Target: "broken"},
	}
	err := All(mounts, root)
	if err == nil {
		t.Fatal("All succeeded with an unknown filesystem type")
	}
	if !errors.Is(err, unix.ENODEV) {
		t.Errorf("error %v does not wrap ENODEV", err)
	}
	for _, want := range []string{"mounts[2]", `"broken"`, "no-such-fs"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if left := mountsUnder(t, root); len(left) != 0 {
		t.Errorf("%d mounts left after rollback, first at %s", len(left), left[0].Mountpoint)
	}
}

func TestMountRejectsRelativeTarget(t *testing.T) {
	err := Mount{Type: "tmpfs", Source: "tmpfs"}.Mount("relative/path")
	if err == nil || !strings.Contains(err.Error(), "not absolute") {
		t.Errorf("got %v, want an error about the relative target", err)
	}
}
