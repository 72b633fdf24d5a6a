package client

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/berthrt/berth/mount"
	"github.com/berthrt/berth/oci"
)

// specRootFS lends a container's snapshot to the spec options of
// WithNewSpec and WithSpec (oci.ContextWithRootFS), so that user and group
// names resolve in the container's own /etc/passwd: on the first request
// it mounts the snapshot read-only in a temporary folder, and release
// unmounts it. Nothing is mounted when no option asks, so a spec of
// numeric users needs neither root nor a mount.
type specRootFS struct {
	c    *Client
	info *ContainerInfo
	dir  string // the mounted folder, "" until asked
	err  error  // of the first attempt, returned again
}

// withSpecRootFS returns ctx lending info's snapshot to spec options, and
// the function that unmounts it again; with no snapshot, ctx unchanged.
func withSpecRootFS(ctx context.Context, c *Client, info *ContainerInfo) (context.Context, func() error) {
	if info.SnapshotKey == "" || info.Snapshotter == "" {
		return ctx, func() error { return nil }
	}
	r := &specRootFS{c: c, info: info}
	return oci.ContextWithRootFS(ctx, r.path), r.release
}

func (r *specRootFS) path(ctx context.Context) (string, error) {
	if r.dir != "" || r.err != nil {
		return r.dir, r.err
	}
	r.dir, r.err = r.mount(ctx)
	return r.dir, r.err
}

func (r *specRootFS) mount(ctx context.Context) (string, error) {
	ms, err := rootFSNow(ctx, r.c, r.info)
	if err != nil {
		return "", err
	}
	// The snapshot is an image's files, setuid ones and device nodes
	// included: it is mounted nosuid and nodev on a folder inside one
	// that only root may enter (MkdirTemp makes it 0700, and the mount
	// covers only the inner folder's mode).
	private, err := os.MkdirTemp("", "berth-spec-rootfs-")
	if err != nil {
		return "", fmt.Errorf("container %q: %w", r.info.ID, err)
	}
	dir := filepath.Join(private, "rootfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", errors.Join(fmt.Errorf("container %q: %w", r.info.ID, err), os.Remove(private))
	}
	ro := mount.ReadOnly(ms)
	for i := range ro {
		ro[i].Options = append(ro[i].Options, "nosuid", "nodev")
	}
	if err := mount.All(ro, dir); err != nil {
		return "", errors.Join(fmt.Errorf("container %q: mount snapshot %q to read its /etc: %w", r.info.ID, r.info.SnapshotKey, err), os.RemoveAll(private))
	}
	return dir, nil
}

func (r *specRootFS) release() error {
	if r.dir == "" {
		return nil
	}
	if err := mount.UnmountAll(r.dir, 0); err != nil {
		return fmt.Errorf("container %q: unmount snapshot %q from %s: %w", r.info.ID, r.info.SnapshotKey, r.dir, err)
	}
	return os.RemoveAll(filepath.Dir(r.dir))
}
