package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/internal/testutil"
)

// fakeLeavingRuntime answers as runc does for a stopped container and, like
// runc 1.1 with a busy cgroup folder, reports its delete done without
// having removed the container's cgroup.
const fakeLeavingRuntime = `#!/bin/sh
for a; do
	case "$a" in
	state) echo '{"ociVersion":"1.0.2","id":"c","pid":0,"status":"stopped","bundle":"/b","rootfs":"/b/rootfs","created":"2026-01-01T00:00:00Z","owner":""}'; exit 0 ;;
	kill|delete) exit 0 ;;
	esac
done
exit 1
`

// berth-shim delete removes the container's cgroup folders, named by the
// bundle's config.json, that the runtime's delete left.
func TestDeleteRemovesCgroupTheRuntimeLeft(t *testing.T) {
	testutil.RequireRoot(t, "sh")
	parent := fmt.Sprintf("/berth-deltest-%d", os.Getpid())
	cgPath := parent + "/c"
	var hierarchies []string
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		t.Fatal(err)
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		hierarchies = []string{"/sys/fs/cgroup"}
	} else {
		all, err := filepath.Glob("/sys/fs/cgroup/*")
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range all {
			if fi, err := os.Lstat(filepath.Join(h, "cgroup.procs")); err == nil && fi.Mode().IsRegular() {
				hierarchies = append(hierarchies, h)
			}
		}
	}
	if len(hierarchies) == 0 {
		t.Fatal("no cgroup hierarchy under /sys/fs/cgroup")
	}
	var made []string
	for _, h := range hierarchies {
		dir := filepath.Join(h, cgPath)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		made = append(made, dir)
		t.Cleanup(func() {
			unix.Rmdir(dir)
			unix.Rmdir(filepath.Dir(dir))
		})
	}

	tmp := t.TempDir()
	bundle := filepath.Join(tmp, "bundle")
	if err := os.Mkdir(bundle, 0o700); err != nil {
		t.Fatal(err)
	}
	spec := fmt.Sprintf(`{"ociVersion":"1.0.2","linux":{"cgroupsPath":%q}}`, cgPath)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	runtime := filepath.Join(tmp, "leaving-runc")
	if err := os.WriteFile(runtime, []byte(fakeLeavingRuntime), 0o755); err != nil {
		t.Fatal(err)
	}
	o := &options{namespace: "ns", id: "c", bundle: bundle, runtime: runtime, runtimeRoot: filepath.Join(tmp, "root")}
	if err := del(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	for _, dir := range made {
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("cgroup %s: %v, want it gone", dir, err)
		}
	}
	// The parent, which is not the container's, stays.
	if _, err := os.Stat(filepath.Join(hierarchies[0], parent)); err != nil {
		t.Errorf("the cgroup's parent: %v, want it kept", err)
	}
}
