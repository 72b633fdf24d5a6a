package testutil

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// btrfsImageSize is the size of the sparse file that LoopBtrfs formats:
// mkfs.btrfs wants more than 100 MiB, and only what is written is
// allocated.
const btrfsImageSize = 2 << 30

// ext4ImageSize is the size of the sparse file that LoopExt4 formats: a
// few block groups of 128 MiB.
const ext4ImageSize = 512 << 20

// LoopBtrfs makes a btrfs filesystem on a sparse file, attaches it to a
// loop device and mounts it on a new folder, which it returns. The mount,
// the loop device and the file are removed at cleanup, also when the test
// fails; a test that needs an option (quotas) runs btrfs itself.
func LoopBtrfs(t testing.TB) string {
	t.Helper()
	return loopFS(t, "btrfs", btrfsImageSize, "mkfs.btrfs", "-q")
}

// LoopExt4 is LoopBtrfs for ext4 without a journal, as on this project's
// machines (ext4 then behaves differently: see fsstore's spreadFolders).
func LoopExt4(t testing.TB) string {
	t.Helper()
	return loopFS(t, "ext4", ext4ImageSize, "mkfs.ext4", "-q", "-O", "^has_journal")
}

// loopFS formats a sparse file of size bytes with the command mkfs (its
// last argument is the file), attaches it to a loop device and mounts it
// as fstype on a new folder, which it returns; cleanup undoes each step.
func loopFS(t testing.TB, fstype string, size int64, mkfs ...string) string {
	t.Helper()
	RequireRoot(t, mkfs[0], "losetup")
	_, err := os.Stat("/dev/loop-control")
	Require(t, err == nil, "no /dev/loop-control: loop devices are not available")
	dir := t.TempDir()
	image, mnt := filepath.Join(dir, fstype+".img"), filepath.Join(dir, "mnt")
	f, err := os.Create(image)
	if err != nil {
		t.Fatal(err)
	}
	err = errors.Join(f.Truncate(size), f.Close())
	if err != nil {
		t.Fatal(err)
	}
	run := func(name string, args ...string) string {
		t.Helper()
		var stderr bytes.Buffer
		cmd := exec.Command(name, args...)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.Bytes())
		}
		return strings.TrimSpace(string(out))
	}
	run(mkfs[0], append(mkfs[1:], image)...)
	dev := run("losetup", "--find", "--show", image)
	// Cleanup runs last to first: unmount, then detach, then the temp
	// folder with the image goes.
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "--detach", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup --detach %s: %v: %s", dev, err, out)
		}
	})
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(dev, mnt, fstype, 0, ""); err != nil {
		t.Fatalf("mount %s on %s: %v", dev, mnt, err)
	}
	t.Cleanup(func() {
		err := unix.Unmount(mnt, 0)
		if errors.Is(err, unix.EBUSY) {
			// A test that failed left something open or mounted below;
			// detach it so that the loop device can go.
			t.Errorf("unmount %s: busy; detaching it", mnt)
			err = unix.Unmount(mnt, unix.MNT_DETACH)
		}
		if err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	return mnt
}
