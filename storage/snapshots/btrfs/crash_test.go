package btrfs

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/namespaces"
	"github.com/berthrt/berth/snapshots"
	"github.com/berthrt/berth/storage/snapshots/internal/fsstore"
)

// The fault tests of a Commit between the seal (the read-only flag) and
// the record, as package metadata's fault tests do for its own steps: a
// failure there, and a crash (SIGKILL of a child process) there.

const (
	faultKey   = "extract"
	faultLayer = "layer"
	faultFile  = "file"
)

// prepareWritten prepares faultKey in sn and writes faultFile into it.
func prepareWritten(ctx context.Context, sn snapshots.Snapshotter) error {
	mounts, err := sn.Prepare(ctx, faultKey, "")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(mounts[0].Source, faultFile), []byte("layer"), 0o644)
}

// verifyActiveWritable checks, after a Commit stopped at the seal, that
// faultKey is active and writable, and that a second Commit goes through
// and makes the layer read-only.
func verifyActiveWritable(t *testing.T, ctx context.Context, sn snapshots.Snapshotter) {
	t.Helper()
	info, err := sn.Stat(ctx, faultKey)
	if err != nil || info.Kind != snapshots.KindActive {
		t.Fatalf("the snapshot after a commit stopped at the seal: %+v, %v; want it active", info, err)
	}
	mounts, err := sn.Mounts(ctx, faultKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mounts[0].Source, "more"), nil, 0o644); err != nil {
		t.Errorf("write into the active snapshot: %v", err)
	}
	if err := sn.Commit(ctx, faultLayer, faultKey); err != nil {
		t.Fatalf("commit again: %v", err)
	}
	if err := os.WriteFile(filepath.Join(mounts[0].Source, "late"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write into the committed layer: %v, want EROFS", err)
	}
}

func TestCommitSealFailure(t *testing.T) {
	root := testutil.LoopBtrfs(t)
	injected := errors.New("injected failure")
	fail := true
	sn, err := fsstore.New(Name, root, driver{}, fsstore.WithFailpoint(func(step string) error {
		if step == fsstore.FailCommitSealed && fail {
			return injected
		}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sn.Close() })
	ctx := namespaces.WithNamespace(t.Context(), "test")
	if err := prepareWritten(ctx, sn); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, faultLayer, faultKey); !errors.Is(err, injected) {
		t.Fatalf("commit with a failure at the seal: %v", err)
	}
	fail = false
	verifyActiveWritable(t, ctx, sn)
}

// envCrashChild makes the test binary a child of TestCommitSealCrash: the
// snapshotter's root.
const envCrashChild = "BERTH_TEST_BTRFS_SEAL_CRASH"

// TestCommitSealCrash kills a process between the seal of its Commit and
// the record; the snapshotter opened again finds the snapshot active and
// writable (without New's unseal it stayed read-only), and commits it.
func TestCommitSealCrash(t *testing.T) {
	root := testutil.LoopBtrfs(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestCommitSealCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), envCrashChild+"="+root)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL at the seal: %v\n%s", err, out)
	}
	sn, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sn.Close() })
	verifyActiveWritable(t, namespaces.WithNamespace(t.Context(), "test"), sn)
}

// TestCommitSealCrashChild prepares and commits, killing its own process
// at the seal; without its parent it has nothing to do.
func TestCommitSealCrashChild(t *testing.T) {
	root := os.Getenv(envCrashChild)
	if root == "" {
		return
	}
	sn, err := fsstore.New(Name, root, driver{}, fsstore.WithFailpoint(func(step string) error {
		if step == fsstore.FailCommitSealed {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := namespaces.WithNamespace(context.Background(), "test")
	if err := prepareWritten(ctx, sn); err != nil {
		t.Fatal(err)
	}
	err = sn.Commit(ctx, faultLayer, faultKey)
	t.Fatalf("commit ran past the seal: %v", err)
}

// TestRemoveNestedSubvolumes: a container that made subvolumes in its
// root filesystem (one nested in another, one read-only) is removed with
// them, active or committed (read-only), and no subvolume is left.
func TestRemoveNestedSubvolumes(t *testing.T) {
	mnt, root, sn, ctx := openInLoop(t)
	nest := func(key string) {
		t.Helper()
		mounts, err := sn.Prepare(ctx, key, "")
		if err != nil {
			t.Fatal(err)
		}
		rootfs := mounts[0].Source
		inner := filepath.Join(rootfs, "var", "inner")
		if err := os.MkdirAll(filepath.Dir(inner), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := createSubvolume(inner); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(inner, "f"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := createSubvolume(filepath.Join(inner, "deeper")); err != nil {
			t.Fatal(err)
		}
		if err := snapshotSubvolume(filepath.Join(rootfs, "frozen"), inner, true); err != nil {
			t.Fatal(err)
		}
	}
	nest("container")
	nest("extract")
	if err := sn.Commit(ctx, "layer", "extract"); err != nil {
		t.Fatal(err)
	}
	removeAllAndCheck(t, ctx, sn, mnt, root, "container", "layer")
}
