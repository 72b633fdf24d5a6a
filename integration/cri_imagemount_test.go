package integration

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/internal/testimage"
	"github.com/berthrt/berth/leases"
	"github.com/berthrt/berth/snapshots"
)

// imageMountLabel is the label of a CRI container's image-mount lease
// (cri/imagemounts.go).
const imageMountLabel = "berth.cri.image-mounts-of"

// TestCRIImageMount mounts an image (two layers, so an overlay of them)
// into a container, whole and by a sub path: its files are there, writes
// fail, ContainerStatus reports the image's id; bad mounts are refused
// without leftovers; a SIGKILLed berthd finds the mounts again, mounts
// again one that is gone, and releases what a crash left of a container
// that does not exist; removal leaves no mount, view, lease or folder.
func TestCRIImageMount(t *testing.T) {
	e := newCRIEnv(t)
	ctx := e.ctx(t)
	ref := e.reg.Addr + "/imgvol:1"
	img, err := testimage.Build(ocispec.ImageConfig{},
		[]testimage.Entry{testimage.File("data/marker", "one\n"), testimage.File("data/sub/inner", "old\n"), testimage.Symlink("data/up", "../../../../..")},
		[]testimage.Entry{testimage.File("data/sub/inner", "two\n")})
	if err != nil {
		t.Fatal(err)
	}
	pushTestimage(t, ref, img)
	pulled, err := e.images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		t.Fatal(err)
	}
	imageRef := pulled.ImageRef
	cfg := e.podConfig(t, "imgvol", false)
	pod := e.runPod(t, cfg)
	c := e.d.client(t, "k8s.io")
	state := filepath.Join(e.d.state, ".cri", "imagemounts")

	create := func(name string, mounts ...*runtimeapi.Mount) (string, error) {
		r, err := e.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: cfg, Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: name},
			Image:    &runtimeapi.ImageSpec{Image: e.busybox},
			Command:  []string{"sleep", "600"},
			Mounts:   mounts,
		}})
		return r.GetContainerId(), err
	}
	whole := &runtimeapi.Mount{ContainerPath: "/mnt/img", Readonly: true, Image: &runtimeapi.ImageSpec{Image: imageRef, UserSpecifiedImage: ref}}
	sub := &runtimeapi.Mount{ContainerPath: "/mnt/sub", Readonly: true, Image: &runtimeapi.ImageSpec{Image: ref}, ImageSubPath: "data/up/data/sub"}

	// Refused, each with what was wrong, and nothing left of them.
	for _, tc := range []struct {
		m    *runtimeapi.Mount
		code codes.Code
		says string
	}{
		{&runtimeapi.Mount{ContainerPath: "/m", Readonly: true, Image: whole.Image, ImageSubPath: "data/missing"}, codes.InvalidArgument, `"data/missing" does not exist`},
		{&runtimeapi.Mount{ContainerPath: "/m", Readonly: true, Image: whole.Image, ImageSubPath: "data/marker"}, codes.InvalidArgument, `"data/marker" is not a folder`},
		{&runtimeapi.Mount{ContainerPath: "/m", Readonly: true, Image: whole.Image, ImageSubPath: "../data"}, codes.InvalidArgument, `"../data"`},
		{&runtimeapi.Mount{ContainerPath: "/m", Readonly: false, Image: whole.Image}, codes.InvalidArgument, "read-only"},
		{&runtimeapi.Mount{ContainerPath: "/m", Readonly: true, Image: &runtimeapi.ImageSpec{Image: e.reg.Addr + "/absent:1"}}, codes.NotFound, "is not present"},
	} {
		_, err := create("bad", whole, tc.m)
		if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("mount %v: %v; want %v saying %s", tc.m, err, tc.code, tc.says)
		}
	}
	checkReleased(ctx, t, c, state, "")

	id, err := create("vol", whole, sub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	checkMounted := func(when string) {
		t.Helper()
		out, err := e.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"sh", "-c",
			"cat /mnt/img/data/marker /mnt/sub/inner && ls /mnt/sub"}})
		if err != nil || out.ExitCode != 0 || string(out.Stdout) != "one\ntwo\ninner\n" {
			t.Errorf("%s: reading the image mounts: %q %q %v", when, out.GetStdout(), out.GetStderr(), err)
		}
		for _, p := range []string{"/mnt/img/new", "/mnt/img/data/marker", "/mnt/sub/inner"} {
			out, err := e.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"sh", "-c", "echo x > " + p}})
			if err != nil || out.ExitCode == 0 || !strings.Contains(string(out.Stderr), "Read-only file system") {
				t.Errorf("%s: writing %s: %q %v; want a read-only file system", when, p, out.GetStderr(), err)
			}
		}
		st, err := e.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
		if err != nil {
			t.Fatal(err)
		}
		var refs []string
		for _, m := range st.Status.Mounts {
			if m.Image != nil {
				refs = append(refs, m.ContainerPath+"="+m.Image.ImageRef)
			}
		}
		if want := []string{"/mnt/img=" + imageRef, "/mnt/sub=" + imageRef}; strings.Join(refs, " ") != strings.Join(want, " ") {
			t.Errorf("%s: status mounts %v; want %v", when, refs, want)
		}
	}
	checkMounted("created")

	// On the host: each view mounted read-only, nosuid, nodev, in folders
	// of root's alone.
	for _, dir := range []string{state, filepath.Join(state, id)} {
		if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v %v; want mode 0700", dir, fi.Mode(), err)
		}
	}
	views, err := mountinfo.GetMounts(mountinfo.PrefixFilter(filepath.Join(state, id)))
	if err != nil || len(views) != 2 {
		t.Fatalf("host mounts of the views: %v %v", views, err)
	}
	for _, m := range views {
		if !hasOpts(m.Options, "ro", "nosuid", "nodev") {
			t.Errorf("view %s mounted %s; want ro,nosuid,nodev", m.Mountpoint, m.Options)
		}
	}

	// A crash, with two more things to find: the first view's host mount
	// gone (as after a reboot), and what a crash in CreateContainer left
	// of a container that was never recorded.
	e.d.kill()
	if err := unix.Unmount(filepath.Join(state, id, "0"), 0); err != nil {
		t.Fatal(err)
	}
	ghost := strings.Repeat("d", 64)
	e.d.start()
	e.waitServing(t)
	ghostCtx := leases.WithLease(ctx, ghost+"-imgmounts")
	if _, err := c.LeasesService().Create(ctx, leases.Lease{ID: ghost + "-imgmounts", Labels: map[string]string{imageMountLabel: ghost}}); err != nil {
		t.Fatal(err)
	}
	chain, err := imageChainID(ctx, c, ref)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SnapshotService("").View(ghostCtx, ghost+"-im0", chain); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(state, ghost, "0"), 0o700); err != nil {
		t.Fatal(err)
	}
	e.d.kill()
	e.d.start()
	e.waitServing(t)
	checkMounted("after berthd's restarts")
	if ok, err := mountinfo.Mounted(filepath.Join(state, id, "0")); !ok || err != nil {
		t.Errorf("the view whose host mount was gone is not mounted again: %v", err)
	}
	checkReleased(ctx, t, c, state, ghost)

	if _, err := e.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	checkReleased(ctx, t, c, state, id)
	if _, err := e.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatal(err)
	}
	e.checkNothingLeft(t)
}

// checkReleased checks that container id ("" for any) has no image-mount
// folder, host mount, view snapshot or lease.
func checkReleased(ctx context.Context, t *testing.T, c *client.Client, state, id string) {
	t.Helper()
	if left := mountsUnder(filepath.Join(state, id)); len(left) != 0 {
		t.Errorf("image mounts left: %v", left)
	}
	if id != "" {
		if _, err := os.Stat(filepath.Join(state, id)); err == nil {
			t.Errorf("the image-mount folder of %s is left", id)
		}
	} else if entries, _ := os.ReadDir(state); len(entries) != 0 {
		t.Errorf("image-mount folders left: %v", entries)
	}
	var views []string
	if err := c.SnapshotService("").Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if strings.HasPrefix(info.Name, id) && strings.Contains(info.Name, "-im") {
			views = append(views, info.Name)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(views) != 0 {
		t.Errorf("image-mount views left: %v", views)
	}
	ls, err := c.LeasesService().List(ctx, `labels."`+imageMountLabel+`"`)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		if id == "" || l.Labels[imageMountLabel] == id {
			t.Errorf("image-mount lease left: %s", l.ID)
		}
	}
}

// imageChainID is the chain id of image ref's layers.
func imageChainID(ctx context.Context, c *client.Client, ref string) (string, error) {
	img, err := c.GetImage(ctx, ref)
	if err != nil {
		return "", err
	}
	return img.ChainID(ctx)
}

// hasOpts reports whether the comma-separated mount options have all of
// want.
func hasOpts(opts string, want ...string) bool {
	have := strings.Split(opts, ",")
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}
