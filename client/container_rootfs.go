package client

import (
	"context"
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"github.com/berthrt/berth/errdefs"
	containersv1 "github.com/berthrt/berth/proto/containers/v1"
	introspectionv1 "github.com/berthrt/berth/proto/introspection/v1"
	"github.com/berthrt/berth/snapshots"
	"github.com/berthrt/berth/unpack"
)

// DefaultSnapshotter returns the daemon's default snapshotter (its
// config's [snapshotter] default), which WithNewSnapshot and
// WithNewSnapshotView use when no WithSnapshotter came before them, and
// into which pulls and imports unpack by default.
func (c *Client) DefaultSnapshotter(ctx context.Context) (string, error) {
	resp, err := c.api().introspect.Services(ctx, &introspectionv1.ServicesRequest{Filters: []string{`type=="berth.service.v1",id=="snapshots"`}})
	if err != nil {
		return "", err
	}
	for _, s := range resp.GetServices() {
		if name := s.GetExports()["default"]; name != "" {
			return name, nil
		}
	}
	return "", fmt.Errorf("the daemon names no default snapshotter: %w", errdefs.ErrNotImplemented)
}

// Spec returns the image's config, of the linux/amd64 manifest when the
// image is an index. It makes Image an oci.ImageConfigSource.
// The config shares its slices and maps with the Image: callers must not
// change them.
func (img *Image) Spec(ctx context.Context) (ocispec.Image, error) {
	r, err := img.resolve(ctx)
	if err != nil {
		return ocispec.Image{}, err
	}
	return r.Spec, nil
}

// ChainID returns the chain ID of the image's layers: the name of the
// committed snapshot that an unpack of the image leaves.
func (img *Image) ChainID(ctx context.Context) (string, error) {
	r, err := img.resolve(ctx)
	if err != nil {
		return "", err
	}
	return r.ChainID(), nil
}

// resolve reads the image's manifest and config (linux/amd64 of an index)
// once per Image: the target is named by its digest, so what it resolves
// to never changes, and a container made from an image needs both its
// chain ID and its config (two reads of each blob, two round trips each,
// before). Only a success is kept.
func (img *Image) resolve(ctx context.Context) (unpack.Image, error) {
	img.mu.Lock()
	defer img.mu.Unlock()
	if img.resolved != nil {
		return *img.resolved, nil
	}
	r, err := unpack.Resolve(ctx, img.client.ContentStore(), img.Target(), nil)
	if err != nil {
		return r, err
	}
	img.resolved = &r
	return r, nil
}

// WithSnapshotter names the snapshotter of the container's snapshot,
// for WithNewSnapshot and WithNewSnapshotView after it.
func WithSnapshotter(name string) NewContainerOpts {
	return func(_ context.Context, _ *Client, info *ContainerInfo) error {
		info.Snapshotter = name
		return nil
	}
}

// WithImage records the image the container is made from.
func WithImage(img *Image) NewContainerOpts { return WithImageName(img.Name()) }

// WithNewSnapshot prepares the writable snapshot id on top of the image's
// unpacked layers (Pull with WithPullUnpack into the same snapshotter)
// and makes it the container's root filesystem; NewTask mounts it.
//
// Inside NewContainer the daemon makes the snapshot with the container, in
// Containers.Create (its snapshot field): one call, one transaction, both
// or neither, and no lease, since the container's record holds the
// snapshot from the moment it exists. Under a lease of the caller's
// (leases.WithLease) the daemon adds the snapshot to that lease too, as
// Snapshots.Prepare does. A spec option that reads the container's files
// (a user name) needs the snapshot before the container: it is then
// prepared on its own, under the caller's lease or one of NewContainer's
// own, and removed again should the container's create fail. A daemon
// that predates the field stores the container alone and says so;
// NewContainer then prepares the snapshot right after the record (which
// holds it against GC), and deletes the record again if that fails.
// Outside NewContainer the option prepares the snapshot at once, under
// the lease of ctx if any.
func WithNewSnapshot(id string, img *Image, opts ...snapshots.Opt) NewContainerOpts {
	return newSnapshot(id, img, false, opts)
}

// WithNewSnapshotView is WithNewSnapshot with a read-only view: the
// container cannot write to its root filesystem, and views of one image
// share its layers without a copy.
func WithNewSnapshotView(id string, img *Image, opts ...snapshots.Opt) NewContainerOpts {
	return newSnapshot(id, img, true, opts)
}

func newSnapshot(id string, img *Image, view bool, opts []snapshots.Opt) NewContainerOpts {
	return func(ctx context.Context, c *Client, info *ContainerInfo) error {
		// The snapshotter's name and the image's chain ID (its manifest
		// and config) do not depend on each other: asked at once over
		// the one connection, they cost the wait of the longer. Each
		// goroutine writes only its own variable, read after Wait.
		var (
			snapshotter = info.Snapshotter
			parent      string
		)
		g, gctx := errgroup.WithContext(ctx)
		if snapshotter == "" {
			g.Go(func() (err error) {
				snapshotter, err = c.DefaultSnapshotter(gctx)
				return err
			})
		}
		g.Go(func() (err error) {
			if parent, err = img.ChainID(gctx); err != nil {
				return fmt.Errorf("image %q: %w", img.Name(), err)
			}
			return nil
		})
		if err := g.Wait(); err != nil {
			return fmt.Errorf("container %q: %w", info.ID, err)
		}
		base, err := snapshots.ApplyOpts(opts)
		if err != nil {
			return fmt.Errorf("container %q: snapshot %q: %w", info.ID, id, err)
		}
		s := &newRootFS{snapshotter: snapshotter, key: id, parent: parent, view: view, labels: base.Labels, image: img.Name()}
		if h, ok := ctx.Value(newContainerCallKey{}).(*newContainerCall); ok {
			info.Snapshotter, info.SnapshotKey = snapshotter, id
			h.ask(s)
			return nil
		}
		if _, err := s.make(ctx, c, info.ID); err != nil {
			return err
		}
		info.Snapshotter, info.SnapshotKey = snapshotter, id
		return nil
	}
}

// newRootFS is the snapshot that WithNewSnapshot (View) asks for: key of
// snapshotter on parent, the chain ID of image.
type newRootFS struct {
	snapshotter, key, parent string
	view                     bool
	labels                   map[string]string
	image                    string
}

// request is the snapshot field of Containers.Create that makes s.
func (s *newRootFS) request() *containersv1.NewSnapshot {
	return &containersv1.NewSnapshot{Parent: s.parent, View: s.view, Labels: s.labels}
}

// make prepares s (or its view) with a call of its own, under the lease
// of ctx if any, and returns its mounts.
func (s *newRootFS) make(ctx context.Context, c *Client, id string) ([]Mount, error) {
	sn := c.SnapshotService(s.snapshotter)
	opts := []snapshots.Opt{snapshots.WithLabels(s.labels)}
	var (
		ms  []Mount
		err error
	)
	if s.view {
		ms, err = sn.View(ctx, s.key, s.parent, opts...)
	} else {
		ms, err = sn.Prepare(ctx, s.key, s.parent, opts...)
	}
	if err != nil {
		if s.parent == "" || !errdefs.IsNotFound(err) {
			err = fmt.Errorf("container %q: snapshot %q: %w", id, s.key, err)
		}
		return nil, s.explain(id, err)
	}
	return ms, nil
}

// explain says of a NotFound from making s that the image may not be
// unpacked: a missing parent is the one NotFound of Prepare and View
// (every snapshotter passes the shared suite's case) besides an unknown
// snapshotter, so no Stat beforehand, one round trip less. Other errors
// are returned as they are; the daemon's name what was wrong.
func (s *newRootFS) explain(id string, err error) error {
	if s.parent != "" && errdefs.IsNotFound(err) {
		return fmt.Errorf("container %q: image %q is not unpacked into %s (pull it with unpack): %w", id, s.image, s.snapshotter, err)
	}
	return err
}

// WithSnapshotCleanup removes the container's snapshot when the container
// is deleted, in one call: the daemon deletes the container's record and
// its snapshot's record in one transaction (remove_snapshot), so that no
// crash leaves one without the other. Two calls, as containerd makes
// (snapshot first), left a container without its root filesystem when cut
// between them (the fault-injection run found such containers); berth's
// record first left a snapshot that nothing references until GC. A
// snapshot that cannot go (the parent of another) fails the delete, and
// the container stays.
func WithSnapshotCleanup(ctx context.Context, c *Client, info ContainerInfo) error {
	if info.SnapshotKey == "" || info.Snapshotter == "" {
		return nil
	}
	// A task's shim has the snapshot mounted: removing it would remove
	// the files of a running container. The daemon refuses to delete a
	// container with a task (FailedPrecondition), under the container's
	// lock, so the snapshot is removed only once no task can have it
	// mounted.
	resp, err := c.api().containers.Delete(ctx, &containersv1.DeleteContainerRequest{Id: info.ID, RemoveSnapshot: true})
	if err != nil {
		return err
	}
	if deleted, ok := ctx.Value(recordDeletedKey{}).(*bool); ok {
		*deleted = true // container.Delete need not ask again
	}
	if resp.GetSnapshotRemoved() {
		return nil
	}
	// A daemon older than remove_snapshot deleted the record only: the
	// snapshot goes in a second call, record first as those daemons did.
	if err := c.SnapshotService(info.Snapshotter).Remove(ctx, info.SnapshotKey); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("container %q deleted; its snapshot %q (GC removes it): %w", info.ID, info.SnapshotKey, err)
	}
	return nil
}

// snapshotRootFS returns the mounts of the container's snapshot; none
// when the container has no snapshot.
func (c *container) snapshotRootFS(ctx context.Context) ([]Mount, error) {
	info, err := c.Info(ctx)
	if err != nil || info.SnapshotKey == "" || info.Snapshotter == "" {
		return nil, err
	}
	ms, err := c.client.SnapshotService(info.Snapshotter).Mounts(ctx, info.SnapshotKey)
	if err != nil {
		return nil, fmt.Errorf("task %q: rootfs of snapshot %q: %w", c.id, info.SnapshotKey, err)
	}
	return ms, nil
}
