package cgroupclean

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/internal/testutil"
)

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
		if !strings.HasPrefix(dir, "/sys/fs/cgroup") || !strings.HasSuffix(dir, "/berth/ns/c") {
			t.Errorf("folder %s: want one under /sys/fs/cgroup ending in /berth/ns/c", dir)
		}
	}
}

// TestBundleLeft makes a cgroup folder, with one below it, in every
// hierarchy of this host, names it in a bundle's config.json and puts a
// process in the lower ones: nothing busy is removed and the error names
// the process; once it is gone, both levels go, and their parent stays.
func TestBundleLeft(t *testing.T) {
	testutil.RequireRoot(t, "sleep")
	parent := fmt.Sprintf("/berth-cgclean-%d", os.Getpid())
	cgPath := parent + "/c"
	tops, err := PathFolders(cgPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(tops) == 0 {
		t.Fatal("no cgroup hierarchy mounted")
	}
	sleeper := exec.Command("sleep", "1000")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	reaped := make(chan struct{})
	go func() { sleeper.Wait(); close(reaped) }()
	t.Cleanup(func() { sleeper.Process.Kill(); <-reaped })
	for _, top := range tops {
		low := filepath.Join(top, "inner")
		if err := os.MkdirAll(low, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			sleeper.Process.Kill() // first: a folder with a process stays
			<-reaped
			unix.Rmdir(low)
			unix.Rmdir(top)
			unix.Rmdir(filepath.Dir(top))
		})
		// cpuset: a folder with no CPUs or memory nodes takes no process.
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			v, err := os.ReadFile(filepath.Join(filepath.Dir(filepath.Dir(top)), f))
			if err != nil {
				continue
			}
			for _, d := range []string{filepath.Dir(top), top, low} {
				if err := os.WriteFile(filepath.Join(d, f), v, 0); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := os.WriteFile(filepath.Join(low, "cgroup.procs"), []byte(strconv.Itoa(sleeper.Process.Pid)), 0); err != nil {
			t.Fatalf("put the sleeper in %s: %v", low, err)
		}
	}
	bundle := t.TempDir()
	spec := fmt.Sprintf(`{"ociVersion":"1.0.2","linux":{"cgroupsPath":%q}}`, cgPath)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	err = BundleLeft(ctx, bundle)
	cancel()
	if !errors.Is(err, unix.EBUSY) || !strings.Contains(err.Error(), strconv.Itoa(sleeper.Process.Pid)) {
		t.Errorf("while a process is in: %v, want busy, naming pid %d", err, sleeper.Process.Pid)
	}
	for _, top := range tops {
		if _, err := os.Stat(filepath.Join(top, "inner")); err != nil {
			t.Errorf("a busy folder was removed: %v", err)
		}
	}

	sleeper.Process.Kill()
	<-reaped
	if err := BundleLeft(context.Background(), bundle); err != nil {
		t.Fatalf("once the process is gone: %v", err)
	}
	for _, top := range tops {
		if _, err := os.Stat(top); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: %v, want it gone", top, err)
		}
		if _, err := os.Stat(filepath.Dir(top)); err != nil {
			t.Errorf("the parent, not the container's: %v, want it kept", err)
		}
	}
	// Gone already is removed; a bundle without a spec has nothing.
	if err := BundleLeft(context.Background(), bundle); err != nil {
		t.Errorf("removed folders: %v", err)
	}
	if err := BundleLeft(context.Background(), t.TempDir()); err != nil {
		t.Errorf("a bundle without config.json: %v", err)
	}
}
