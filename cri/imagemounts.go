package cri

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/identifiers"
	"github.com/berthrt/berth/leases"
	"github.com/berthrt/berth/mount"
	"github.com/berthrt/berth/oci"
)

// Image mounts (KEP-4639): a CRI Mount whose image is set shows that
// image's root filesystem, or a folder of it (image_sub_path), read-only
// at its container path.
//
// For container id, berth makes one view snapshot of each image's layers
// (key "<id>-im<n>") under the container's image-mount lease
// (imageMountLease(id), labelled imageMountLabel=id, without expiry), so
// that garbage collection keeps the views exactly as long as the lease;
// mounts each view read-only, nosuid and nodev at
// <state>/imagemounts/<id>/<n>, folders of root's alone (0700): no
// unprivileged host user reaches an image's content through them; and
// binds it, or its sub path, read-only, nosuid and nodev into the
// container.
//
// Lifetime: CreateContainer makes them before the container's record,
// which lists them (containerRecord.ImageMounts); its undo releases them.
// removeContainer releases them before it deletes the berth container, so
// a crash between the two leaves a record whose release is repeated. Load
// mounts again what a record lists and is not mounted (the state folder
// lost its mounts with a reboot), and releases the leases and folders of
// containers that do not exist (a crash in CreateContainer before the
// record was written). Release is idempotent and needs only the id.

const (
	// imageMountsMax bounds the image mounts of one container: the
	// request is input, and each costs a snapshot and a mount.
	imageMountsMax = 64
	// imageSubPathMax bounds an image sub path, as PATH_MAX does.
	imageSubPathMax = 4096
	// imageMountLabel labels a container's image-mount lease with the
	// container's id, for Load to find leases whose container is gone.
	imageMountLabel = "berth.cri.image-mounts-of"
)

// imageMountRecord is one image mount of a container, as its record keeps
// it.
type imageMountRecord struct {
	// ContainerPath is where the container sees it.
	ContainerPath string `json:"container_path"`
	// ImageID is the image's id (its config's digest), which ContainerStatus
	// reports as the mount's image_ref; Image the reference the request
	// gave.
	ImageID string `json:"image_id"`
	Image   string `json:"image"`
	// Snapshotter and Key name the view snapshot.
	Snapshotter string `json:"snapshotter"`
	Key         string `json:"key"`
	// SubPath is the request's image_sub_path, "" for the image's root.
	SubPath string `json:"sub_path,omitempty"`
}

// imageMountsRoot holds a folder of image mounts per container.
func (s *Server) imageMountsRoot() string { return filepath.Join(s.cfg.StateDir, "imagemounts") }

// imageMountsDir is the folder of container id's image mounts.
func (s *Server) imageMountsDir(id string) string { return filepath.Join(s.imageMountsRoot(), id) }

// imageMountLease is the lease that holds container id's views.
func imageMountLease(id string) string { return id + "-imgmounts" }

// prepareImageMounts makes and mounts the views of the image mounts among
// mounts for container id, and returns their records in the order of
// mounts. What it made is released by releaseImageMounts(id), also when
// it fails half-way.
func (s *Server) prepareImageMounts(ctx context.Context, id string, mounts []*runtimeapi.Mount) ([]imageMountRecord, error) {
	var recs []imageMountRecord
	for _, m := range mounts {
		if m.GetImage() == nil {
			continue
		}
		dst := m.GetContainerPath()
		switch {
		case len(recs) == imageMountsMax:
			return nil, fmt.Errorf("more than %d image mounts: %w", imageMountsMax, errdefs.ErrInvalidArgument)
		case !path.IsAbs(dst):
			return nil, fmt.Errorf("image mount on %q: the container path must be absolute: %w", dst, errdefs.ErrInvalidArgument)
		case !m.GetReadonly():
			return nil, fmt.Errorf("image mount on %s: image mounts are read-only, readonly must be set: %w", dst, errdefs.ErrInvalidArgument)
		}
		if _, err := cleanImageSubPath(m.GetImageSubPath()); err != nil {
			return nil, fmt.Errorf("image mount on %s: %w", dst, err)
		}
		recs = append(recs, imageMountRecord{ContainerPath: dst, Image: m.GetImage().GetImage(), SubPath: m.GetImageSubPath()})
	}
	if len(recs) == 0 {
		return nil, nil
	}
	snapshotter, err := s.client.DefaultSnapshotter(ctx)
	if err != nil {
		return nil, err
	}
	// 0700 also when it was there before: it is the guard of every mount
	// below it.
	if err := os.MkdirAll(s.imageMountsRoot(), 0o700); err != nil {
		return nil, fmt.Errorf("image mounts: %w", err)
	}
	if err := os.Chmod(s.imageMountsRoot(), 0o700); err != nil {
		return nil, fmt.Errorf("image mounts: %w", err)
	}
	if err := os.Mkdir(s.imageMountsDir(id), 0o700); err != nil {
		return nil, fmt.Errorf("image mounts: %w", err)
	}
	lease, err := s.client.LeasesService().Create(ctx, leases.Lease{ID: imageMountLease(id), Labels: map[string]string{imageMountLabel: id}})
	if err != nil {
		return nil, fmt.Errorf("image mounts: lease: %w", err)
	}
	lctx := leases.WithLease(ctx, lease.ID)
	sn := s.client.SnapshotService(snapshotter)
	for i := range recs {
		r := &recs[i]
		ci, err := s.findImage(ctx, r.Image)
		if errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("image mount on %s: image %.200q is not present (the kubelet pulls an image volume's image before it creates the container): %w", r.ContainerPath, r.Image, err)
		}
		if err != nil {
			return nil, fmt.Errorf("image mount on %s: %w", r.ContainerPath, err)
		}
		img, err := s.client.GetImage(ctx, ci.names[0])
		if err != nil {
			return nil, fmt.Errorf("image mount on %s: %w", r.ContainerPath, err)
		}
		parent, err := img.ChainID(ctx)
		if err != nil {
			return nil, fmt.Errorf("image mount on %s: image %s: %w", r.ContainerPath, ci.id, err)
		}
		if parent != "" {
			if _, err := sn.Stat(ctx, parent); errdefs.IsNotFound(err) {
				return nil, fmt.Errorf("image mount on %s: image %s is not unpacked into snapshotter %s: %w", r.ContainerPath, ci.id, snapshotter, errdefs.ErrFailedPrecondition)
			}
		}
		r.ImageID, r.Snapshotter, r.Key = ci.id, snapshotter, id+"-im"+strconv.Itoa(i)
		ms, err := sn.View(lctx, r.Key, parent)
		if err != nil {
			return nil, fmt.Errorf("image mount on %s: view of image %s: %w", r.ContainerPath, ci.id, err)
		}
		if err := s.mountImageView(id, i, ms); err != nil {
			return nil, fmt.Errorf("image mount on %s: %w", r.ContainerPath, err)
		}
		if _, err := resolveImageSubPath(s.imageMountDir(id, i), r.SubPath); err != nil {
			return nil, fmt.Errorf("image mount on %s: image %.200q: %w", r.ContainerPath, r.Image, err)
		}
	}
	return recs, nil
}

// imageMountDir is where the view of container id's n-th image mount is
// mounted on the host.
func (s *Server) imageMountDir(id string, n int) string {
	return filepath.Join(s.imageMountsDir(id), strconv.Itoa(n))
}

// mountImageView mounts a view's mounts read-only, nosuid and nodev at
// container id's n-th image mount folder.
func (s *Server) mountImageView(id string, n int, ms []mount.Mount) error {
	dir := s.imageMountDir(id, n)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	ms = mount.ReadOnly(ms)
	for i := range ms {
		ms[i].Options = append(ms[i].Options, "nosuid", "nodev")
	}
	return mount.All(ms, dir)
}

// withImageMounts binds the mounted views of recs (or their sub paths)
// into the container, read-only. It comes after withCRIMounts, which
// leaves image mounts out.
func (s *Server) withImageMounts(id string, recs []imageMountRecord) oci.SpecOpts {
	return func(ctx context.Context, sp *specs.Spec) error {
		var ms []specs.Mount
		for i, r := range recs {
			src, err := resolveImageSubPath(s.imageMountDir(id, i), r.SubPath)
			if err != nil {
				return fmt.Errorf("image mount on %s: image %.200q: %w", r.ContainerPath, r.Image, err)
			}
			ms = append(ms, specs.Mount{Destination: r.ContainerPath, Type: "bind", Source: src,
				Options: []string{"rbind", "ro", "nosuid", "nodev", "rprivate"}})
		}
		return oci.WithMounts(ms)(ctx, sp)
	}
}

// imageMountStatus returns mounts as ContainerStatus reports them: an
// image mount with its image's id as image_ref, which is what PullImage
// returned for it.
func imageMountStatus(mounts []*runtimeapi.Mount, recs []imageMountRecord) []*runtimeapi.Mount {
	if len(recs) == 0 {
		return mounts
	}
	out := make([]*runtimeapi.Mount, 0, len(mounts))
	n := 0
	for _, m := range mounts {
		if m.GetImage() != nil && n < len(recs) {
			m = proto.CloneOf(m)
			m.Image.ImageRef = recs[n].ImageID
			n++
		}
		out = append(out, m)
	}
	return out
}

// remountImageMounts mounts again each image mount of c that is not
// mounted (after a reboot emptied the state folder's mounts).
func (s *Server) remountImageMounts(ctx context.Context, c *container) error {
	var errs []error
	for i, r := range c.rec.ImageMounts {
		dir := s.imageMountDir(c.rec.ID, i)
		if ok, err := mountinfo.Mounted(dir); err == nil && ok {
			continue
		}
		if err := os.MkdirAll(s.imageMountsDir(c.rec.ID), 0o700); err != nil {
			errs = append(errs, err)
			continue
		}
		ms, err := s.client.SnapshotService(r.Snapshotter).Mounts(ctx, r.Key)
		if err != nil {
			errs = append(errs, fmt.Errorf("image mount on %s: %w", r.ContainerPath, err))
			continue
		}
		if err := s.mountImageView(c.rec.ID, i, ms); err != nil {
			errs = append(errs, fmt.Errorf("image mount on %s: %w", r.ContainerPath, err))
		}
	}
	return errors.Join(errs...)
}

// releaseImageMounts unmounts container id's image mounts, removes their
// folders, their views and their lease. What is already gone is no error.
func (s *Server) releaseImageMounts(ctx context.Context, id string) error {
	dir := s.imageMountsDir(id)
	if err := mount.UnmountAll(dir, 0); err != nil {
		return fmt.Errorf("image mounts of %s: %w", id, err)
	}
	// Entry by entry, never RemoveAll: were anything still mounted, its
	// content would be at stake.
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("image mounts of %s: %w", id, err)
	}
	for _, e := range entries {
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("image mounts of %s: %w", id, err)
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("image mounts of %s: %w", id, err)
	}
	ls := s.client.LeasesService()
	res, err := ls.ListResources(ctx, imageMountLease(id))
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("image mounts of %s: %w", id, err)
	}
	for _, r := range res {
		name, ok := strings.CutPrefix(r.Type, leases.ResourceSnapshotPrefix)
		if !ok {
			continue
		}
		if err := s.client.SnapshotService(name).Remove(ctx, r.ID); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("image mounts of %s: remove view %s: %w", id, r.ID, err)
		}
	}
	if err := ls.Delete(ctx, imageMountLease(id)); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("image mounts of %s: %w", id, err)
	}
	return nil
}

// sweepImageMounts releases the image mounts of containers not in known
// (berth container ids): leases and folders that a crash in
// CreateContainer left before the container's record was written.
func (s *Server) sweepImageMounts(ctx context.Context, known map[string]bool) {
	orphans := map[string]bool{}
	list, err := s.client.LeasesService().List(ctx, `labels."`+imageMountLabel+`"`)
	if err != nil {
		s.log.Warn("cri: list image-mount leases", "error", err)
	}
	for _, l := range list {
		if id := l.Labels[imageMountLabel]; !known[id] && l.ID == imageMountLease(id) {
			orphans[id] = true
		}
	}
	entries, _ := os.ReadDir(s.imageMountsRoot())
	for _, e := range entries {
		if id := e.Name(); !known[id] && identifiers.Validate(id) == nil {
			orphans[id] = true
		}
	}
	for id := range orphans {
		if err := s.releaseImageMounts(ctx, id); err != nil {
			s.log.Warn("cri: release the image mounts of a container that does not exist", "container", id, "error", err)
		}
	}
}

// cleanImageSubPath returns sub cleaned, refusing what is not a relative
// path that stays inside the image: an absolute path or a ".." element
// (as the Kubernetes API refuses them in a volume's sub path).
func cleanImageSubPath(sub string) (string, error) {
	switch {
	case sub == "":
		return "", nil
	case len(sub) > imageSubPathMax:
		return "", fmt.Errorf("image sub path %.100q…: longer than %d bytes: %w", sub, imageSubPathMax, errdefs.ErrInvalidArgument)
	case strings.IndexByte(sub, 0) >= 0:
		return "", fmt.Errorf("image sub path %q: contains a NUL byte: %w", sub, errdefs.ErrInvalidArgument)
	case path.IsAbs(sub):
		return "", fmt.Errorf("image sub path %q: must be relative to the image's root: %w", sub, errdefs.ErrInvalidArgument)
	}
	for _, e := range strings.Split(sub, "/") {
		if e == ".." {
			return "", fmt.Errorf("image sub path %q: must not contain \"..\", which could leave the image: %w", sub, errdefs.ErrInvalidArgument)
		}
	}
	return path.Clean(sub), nil
}

// resolveImageSubPath returns the folder that sub names in the image
// mounted at root, with every symlink on the way resolved as if root were
// "/" (an absolute link, or one that climbs out, stays inside root), as
// securejoin does. A sub path that escapes, does not exist or is no folder
// is ErrInvalidArgument naming it.
//
// The resolution is not atomic with the bind that follows it; it needs
// none: root is a read-only mount that only root can reach, of content
// that nobody can change.
func resolveImageSubPath(root, sub string) (string, error) {
	clean, err := cleanImageSubPath(sub)
	if err != nil || clean == "" {
		return root, err
	}
	full, err := securejoin.SecureJoin(root, clean)
	if err != nil {
		return "", fmt.Errorf("image sub path %q: %v: %w", sub, err, errdefs.ErrInvalidArgument)
	}
	st, err := os.Lstat(full)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("image sub path %q does not exist in the image: %w", sub, errdefs.ErrInvalidArgument)
	case err != nil:
		return "", fmt.Errorf("image sub path %q: %v: %w", sub, err, errdefs.ErrInvalidArgument)
	case !st.IsDir():
		return "", fmt.Errorf("image sub path %q is not a folder in the image: %w", sub, errdefs.ErrInvalidArgument)
	}
	return full, nil
}
