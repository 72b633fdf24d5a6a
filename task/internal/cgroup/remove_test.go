package cgroup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/internal/testutil"
)

func TestFolders(t *testing.T) {
	mounts := []*mountinfo.Info{
		{Mountpoint: "/sys/fs/cgroup/cpu,cpuacct", Root: "/", FSType: "cgroup", VFSOptions: "rw,cpu,cpuacct"},
		{Mountpoint: "/sys/fs/cgroup/memory", Root: "/", FSType: "cgroup", VFSOptions: "rw,memory"},
		{Mountpoint: "/sys/fs/cgroup/systemd", Root: "/", FSType: "cgroup", VFSOptions: "rw,xattr,name=systemd"},
		{Mountpoint: "/sys/fs/cgroup/unified", Root: "/", FSType: "cgroup2", VFSOptions: "rw"},
	}
	data := "12:rdma:/berth/ns/c\n" + // not mounted
		"5:cpu,cpuacct:/berth/ns/c\n" +
		"4:memory:/berth/ns/c\n" +
		"3:freezer:/\n" + // the root: the host's, never the container's
		"1:name=systemd:/berth/ns/c\n" +
		"0::/berth/ns/c\n"
	got := folders([]byte(data), mounts)
	want := []string{
		"/sys/fs/cgroup/cpu,cpuacct/berth/ns/c",
		"/sys/fs/cgroup/memory/berth/ns/c",
		"/sys/fs/cgroup/systemd/berth/ns/c",
		"/sys/fs/cgroup/unified/berth/ns/c",
	}
	if !slices.Equal(got, want) {
		t.Errorf("folders = %q, want %q", got, want)
	}
	if got := folders([]byte("0::/\n4:memory:/\n"), mounts); len(got) != 0 {
		t.Errorf("a process in the root cgroups: folders %q, want none", got)
	}
}

// TestRemoveLeft makes a cgroup folder, with one below it, in every
// hierarchy of this host and puts a process in the lower ones: RemoveLeft
// removes nothing while the process is there and names it when its bound
// ends, then removes both levels once it is gone. Folders found through
// Load, as the shim finds them.
func TestRemoveLeft(t *testing.T) {
	testutil.RequireRoot(t, "sleep")
	name := fmt.Sprintf("berth-cgremove-%d", os.Getpid())
	hierarchies, err := filepath.Glob(cgroupRoot + "/*")
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(cgroupRoot, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		hierarchies = []string{cgroupRoot}
	}
	sleeper := exec.Command("sleep", "1000")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	reaped := make(chan struct{})
	go func() { sleeper.Wait(); close(reaped) }()
	t.Cleanup(func() { sleeper.Process.Kill(); <-reaped })
	var tops []string
	for _, h := range hierarchies {
		if fi, err := os.Stat(filepath.Join(h, "cgroup.procs")); err != nil || fi.IsDir() {
			continue // not a hierarchy (a v2 host's files, or a symlink's twin)
		}
		top := filepath.Join(h, name)
		if slices.Contains(tops, top) {
			continue
		}
		low := filepath.Join(top, "inner")
		if err := os.MkdirAll(low, 0o755); err != nil {
			t.Fatal(err)
		}
		tops = append(tops, top)
		t.Cleanup(func() {
			sleeper.Process.Kill() // first: a folder with a process stays
			<-reaped
			os.Remove(low)
			os.Remove(top)
		})
		// cpuset: a folder with no CPUs or memory nodes takes no process.
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if v, err := os.ReadFile(filepath.Join(h, f)); err == nil {
				for _, d := range []string{top, low} {
					if err := os.WriteFile(filepath.Join(d, f), v, 0); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		if err := os.WriteFile(filepath.Join(low, "cgroup.procs"), []byte(strconv.Itoa(sleeper.Process.Pid)), 0); err != nil {
			t.Fatalf("put the sleeper in %s: %v", low, err)
		}
	}
	if len(tops) == 0 {
		t.Fatal("no cgroup hierarchy under " + cgroupRoot)
	}
	cg, err := Load(sleeper.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	lows := cg.Folders()
	for _, top := range tops {
		if !slices.Contains(lows, filepath.Join(top, "inner")) {
			t.Errorf("Folders %q lack %s", lows, filepath.Join(top, "inner"))
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	err = RemoveLeft(ctx, tops)
	cancel()
	if !errors.Is(err, unix.EBUSY) || !strings.Contains(err.Error(), strconv.Itoa(sleeper.Process.Pid)) {
		t.Errorf("RemoveLeft while a process is in: %v, want busy, naming pid %d", err, sleeper.Process.Pid)
	}
	for _, top := range tops {
		if _, err := os.Stat(filepath.Join(top, "inner")); err != nil {
			t.Errorf("a busy folder was removed: %v", err)
		}
	}

	sleeper.Process.Kill()
	<-reaped
	if err := RemoveLeft(context.Background(), tops); err != nil {
		t.Fatalf("RemoveLeft once the process is gone: %v", err)
	}
	for _, top := range tops {
		if _, err := os.Stat(top); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: %v, want it gone", top, err)
		}
	}
	// Gone already is removed.
	if err := RemoveLeft(context.Background(), tops); err != nil {
		t.Errorf("RemoveLeft of removed folders: %v", err)
	}
}

func TestPathFolders(t *testing.T) {
	for _, p := range []string{"", "/", "relative/c", "system.slice:berth:c"} {
		if got, err := PathFolders(p); err != nil || len(got) != 0 {
			t.Errorf("PathFolders(%q) = %q, %v; want none", p, got, err)
		}
	}
	got, err := PathFolders("/berth/ns/../ns/c")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 {
		t.Fatal("no folder for /berth/ns/c on this host's cgroup mounts")
	}
	for _, dir := range got {
		if !strings.HasPrefix(dir, cgroupRoot+"/") || !strings.HasSuffix(dir, "/berth/ns/c") {
			t.Errorf("folder %s: want one under %s ending in /berth/ns/c", dir, cgroupRoot)
		}
	}
}
