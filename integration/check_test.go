package integration

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/images/archive"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/io/cio"
	"github.com/berthrt/berth/oci"
)

// berthdCheck runs `berthd check` on d's folders (d must be stopped) and
// returns its output and exit code.
func (d *daemon) check(t *testing.T) (string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := exec.Command(d.bin, "check", "--config", d.config)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &exit) && exit.ExitCode() == 1 && errOut.Len() > 0 && strings.Contains(errOut.String(), "problems"):
		return out.String(), 1
	}
	t.Fatalf("berthd check: %v\n%s%s", err, out.String(), errOut.String())
	return "", 0
}

// TestCheck: berthd check finds nothing after a crash that left a running
// and an exited container, refuses while berthd runs, and reports each
// kind of damage done by hand, with exit status 1.
func TestCheck(t *testing.T) {
	testutil.RequireRoot(t, "runc", "busybox")
	arch, _ := layeredArchive(t)
	d := newDaemon(t)
	const ns = "check"
	ctx := d.nsContext(ns)
	c := d.client(t, ns)
	imgs, err := c.Import(ctx, bytes.NewReader(arch), archive.WithUnpack("overlayfs"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ id, cmd string }{{"runs", "sleep 600"}, {"exits", "exit 3"}} {
		ctr, err := c.NewContainer(ctx, tc.id, client.WithImage(imgs[0]), client.WithSnapshotter("overlayfs"),
			client.WithNewSnapshot(tc.id, imgs[0]), client.WithNewSpec(oci.WithImageConfig(imgs[0]), oci.WithProcessArgs("sh", "-c", tc.cmd)))
		if err != nil {
			t.Fatal(err)
		}
		task, err := ctr.NewTask(ctx, d.creator(nil, nil, nil))
		if err != nil {
			t.Fatal(err)
		}
		exitc, err := task.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := task.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if tc.id == "exits" {
			<-exitc
		}
	}

	if out, err := exec.Command(d.bin, "check", "--config", d.config).CombinedOutput(); err == nil || !strings.Contains(string(out), "is berthd running") {
		t.Errorf("check while berthd runs: %v: %s", err, out)
	}
	d.kill()
	if out, code := d.check(t); code != 0 {
		t.Fatalf("check after a crash: exit %d:\n%s\nberthd log:\n%s", code, out, tail(d.logs(), 30))
	}

	// Damage of each kind.
	lib := filepath.Join(d.root, "lib")
	blobs, _ := filepath.Glob(filepath.Join(lib, "content", "blobs", "sha256", "*"))
	if len(blobs) == 0 {
		t.Fatal("no blobs")
	}
	must(t, os.Remove(blobs[0]))
	must(t, os.Mkdir(filepath.Join(lib, "snapshots", "overlayfs", "snapshots", "new-stray"), 0o700))
	ghost := d.bundle(ns, "ghost")
	must(t, os.MkdirAll(filepath.Join(ghost, "rootfs"), 0o700))
	must(t, os.WriteFile(filepath.Join(ghost, "config.json"), []byte("{}"), 0o600))
	src := t.TempDir()
	must(t, unix.Mount(src, filepath.Join(ghost, "rootfs"), "", unix.MS_BIND, ""))
	t.Cleanup(func() { unix.Unmount(filepath.Join(ghost, "rootfs"), unix.MNT_DETACH) })
	must(t, os.MkdirAll(filepath.Join(d.state, filepath.Base(cio.DefaultFIFODir), "lost-1"), 0o700))
	// The runtime's state of a container no task holds; another that a
	// deleted task's folder set aside stands for, which berthd's start
	// deletes, is not reported.
	stray := filepath.Join(d.state, ".runc", ns, "stray")
	must(t, os.MkdirAll(stray, 0o700))
	must(t, os.MkdirAll(filepath.Join(d.state, ".runc", ns, "aside"), 0o700))
	must(t, os.MkdirAll(filepath.Join(d.state, ".deleted", ns+".aside.1.1"), 0o700))

	out, code := d.check(t)
	if code != 1 {
		t.Errorf("check after damage: exit %d", code)
	}
	for _, want := range []string{"blob-missing\tcheck\t" + "sha256:" + filepath.Base(blobs[0]), "snapshot-folder-unknown", "bundle-without-container\tcheck\t" + ghost,
		"bundle-without-shim\tcheck\t" + ghost, "mount-left\t-\t" + filepath.Join(ghost, "rootfs"), "fifo-folder-left",
		"runtime-state-left\tcheck\t" + stray} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, filepath.Join(d.state, ".runc", ns, "aside")) {
		t.Errorf("check reports the runtime's state of a task set aside:\n%s", out)
	}
	must(t, unix.Unmount(filepath.Join(ghost, "rootfs"), 0))
	must(t, os.RemoveAll(ghost))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
