package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/images"
	"github.com/berthrt/berth/leases"
	"github.com/berthrt/berth/mount"
	"github.com/berthrt/berth/unpack"
)

// commitLeaseExpiration bounds the life of a commit's lease should the
// client die before it deletes it.
const commitLeaseExpiration = time.Hour

// commitCleanupTimeout bounds removing the commit's temporary view and
// resuming a task it paused.
const commitCleanupTimeout = 10 * time.Second

// CommitOpt configures Commit.
type CommitOpt func(*commitOptions) error

type commitOptions struct {
	mediaType string
	pause     bool
	author    string
	message   string
	config    []func(*ocispec.ImageConfig)
}

// WithCommitMediaType sets the new layer's media type, which says its
// compression: ocispec.MediaTypeImageLayerGzip (the default),
// MediaTypeImageLayerZstd or MediaTypeImageLayer (none).
func WithCommitMediaType(mediaType string) CommitOpt {
	return func(o *commitOptions) error {
		o.mediaType = mediaType
		return nil
	}
}

// WithCommitPause pauses the container's running task while its changes
// are read, so that the layer is one moment's state of the tree; the task
// is resumed afterwards, also when the commit fails.
func WithCommitPause(o *commitOptions) error {
	o.pause = true
	return nil
}

// WithCommitAuthor sets the new image's author.
func WithCommitAuthor(author string) CommitOpt {
	return func(o *commitOptions) error {
		o.author = author
		return nil
	}
}

// WithCommitMessage sets the comment of the new layer's history entry.
func WithCommitMessage(message string) CommitOpt {
	return func(o *commitOptions) error {
		o.message = message
		return nil
	}
}

// WithCommitConfig changes the new image's config (entrypoint, command,
// environment, …), which starts as the parent image's.
func WithCommitConfig(fn func(*ocispec.ImageConfig)) CommitOpt {
	return func(o *commitOptions) error {
		o.config = append(o.config, fn)
		return nil
	}
}

// WithCommitCmd sets the new image's command.
func WithCommitCmd(args ...string) CommitOpt {
	return WithCommitConfig(func(c *ocispec.ImageConfig) { c.Cmd = slices.Clone(args) })
}

// Commit makes the image ref of the changes of container id: the
// container must have been made from an image with a snapshot
// (WithNewSnapshot). The container's snapshot is compared with the
// image's layers in the daemon into a new layer (gzip unless
// WithCommitMediaType says otherwise); the new image is the parent
// image's manifest (the platform's one, linux/amd64 by default, of an
// index) with that layer on top, and its config with the layer's diff ID
// and a history entry added. The image ref is created, or pointed at the
// new manifest when it exists. The task may be running (WithCommitPause
// freezes it meanwhile) or gone. The new image is not unpacked: a
// container of it needs an unpack (a pull with unpack does one).
//
// Everything is written under a lease (the context's, else one of its
// own deleted at the end), so that a garbage collection during the
// commit takes nothing; once the image record exists it keeps its
// content.
func (c *Client) Commit(ctx context.Context, id, ref string, opts ...CommitOpt) (_ *Image, err error) {
	o := commitOptions{mediaType: ocispec.MediaTypeImageLayerGzip}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if ref == "" {
		return nil, fmt.Errorf("commit %q: the image name must not be empty: %w", id, errdefs.ErrInvalidArgument)
	}
	ctr, err := c.LoadContainer(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("commit %q: %w", id, err)
	}
	info, err := ctr.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("commit %q: %w", id, err)
	}
	if info.Image == "" || info.SnapshotKey == "" || info.Snapshotter == "" {
		return nil, fmt.Errorf("commit %q: the container was not made from an image with a snapshot: %w", id, errdefs.ErrFailedPrecondition)
	}
	ctx, done, err := c.WithLease(ctx, WithLeaseExpiration(commitLeaseExpiration))
	if err != nil {
		return nil, fmt.Errorf("commit %q: %w", id, err)
	}
	defer func() {
		if derr := done(context.WithoutCancel(ctx)); derr != nil {
			err = errors.Join(err, fmt.Errorf("commit %q: delete lease: %w", id, derr))
		}
	}()
	img, err := c.GetImage(ctx, info.Image)
	if err != nil {
		return nil, fmt.Errorf("commit %q: its image: %w", id, err)
	}
	parent, err := unpack.Resolve(ctx, c.ContentStore(), img.Target(), nil)
	if err != nil {
		return nil, fmt.Errorf("commit %q: its image %q: %w", id, info.Image, err)
	}
	// The new image reuses the parent's config bytes and layers: the
	// lease keeps them should the parent image go meanwhile.
	for _, d := range append([]ocispec.Descriptor{parent.Config}, parent.Layers...) {
		res := leases.Resource{Type: leases.ResourceContent, ID: d.Digest.String()}
		if err := c.LeasesService().AddResource(ctx, leaseOf(ctx), res); err != nil {
			return nil, fmt.Errorf("commit %q: lease %s of its image: %w", id, d.Digest, err)
		}
		// Leased now; still there? (It may have gone before the lease.)
		if _, err := c.ContentStore().Info(ctx, d.Digest); err != nil {
			return nil, fmt.Errorf("commit %q: blob %s of its image %q: %w", id, d.Digest, info.Image, err)
		}
	}
	layer, diffID, err := c.compareContainer(ctx, ctr, info, parent.ChainID(), o)
	if err != nil {
		return nil, fmt.Errorf("commit %q: %w", id, err)
	}
	target, err := c.writeCommitted(ctx, parent, layer, diffID, o)
	if err != nil {
		return nil, fmt.Errorf("commit %q: %w", id, err)
	}
	rec, err := c.ImageService().Create(ctx, images.Image{Name: ref, Target: target})
	if errdefs.IsAlreadyExists(err) {
		rec, err = c.ImageService().Update(ctx, images.Image{Name: ref, Target: target}, "target")
	}
	if err != nil {
		return nil, fmt.Errorf("commit %q: image %q: %w", id, ref, err)
	}
	return NewImage(c, rec), nil
}

// compareContainer compares the container's snapshot with a view of its
// parent chainID in the daemon and returns the new layer.
func (c *Client) compareContainer(ctx context.Context, ctr Container, info ContainerInfo, chainID string, o commitOptions) (_ ocispec.Descriptor, _ digest.Digest, err error) {
	sn := c.SnapshotService(info.Snapshotter)
	st, err := sn.Stat(ctx, info.SnapshotKey)
	if err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("snapshot %q: %w", info.SnapshotKey, err)
	}
	if st.Parent != chainID {
		return ocispec.Descriptor{}, "", fmt.Errorf("snapshot %q is on %q, not on the layers of image %q (%q): %w",
			info.SnapshotKey, st.Parent, info.Image, chainID, errdefs.ErrFailedPrecondition)
	}
	upper, err := sn.Mounts(ctx, info.SnapshotKey)
	if err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("snapshot %q: %w", info.SnapshotKey, err)
	}
	var lower []mount.Mount
	if chainID != "" {
		var b [8]byte
		rand.Read(b[:])
		key := "commit-" + info.ID + "-" + hex.EncodeToString(b[:])
		if lower, err = sn.View(ctx, key, chainID); err != nil {
			return ocispec.Descriptor{}, "", fmt.Errorf("view of %q: %w", chainID, err)
		}
		defer func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitCleanupTimeout)
			defer cancel()
			if rerr := sn.Remove(cctx, key); rerr != nil {
				err = errors.Join(err, fmt.Errorf("remove view %q: %w", key, rerr))
			}
		}()
	}
	if o.pause {
		resume, err := pauseTask(ctx, ctr)
		if err != nil {
			return ocispec.Descriptor{}, "", err
		}
		defer func() { err = errors.Join(err, resume()) }()
	}
	return c.DiffService().Compare(ctx, lower, upper, WithDiffMediaType(o.mediaType))
}

// pauseTask pauses ctr's task when it runs, and returns what resumes it;
// nothing to do without a running task.
func pauseTask(ctx context.Context, ctr Container) (func() error, error) {
	nothing := func() error { return nil }
	task, err := ctr.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return nothing, nil
	} else if err != nil {
		return nil, err
	}
	st, err := task.Status(ctx)
	if err != nil {
		return nil, err
	}
	if st.Status != Running {
		return nothing, nil
	}
	if err := task.Pause(ctx); err != nil {
		return nil, fmt.Errorf("pause: %w", err)
	}
	return func() error {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitCleanupTimeout)
		defer cancel()
		if err := task.Resume(cctx); err != nil {
			return fmt.Errorf("resume: %w", err)
		}
		return nil
	}, nil
}

// writeCommitted writes the config and manifest of parent with layer on
// top and returns the manifest's descriptor. The manifest carries the
// labels that keep its config and layers from garbage collection.
func (c *Client) writeCommitted(ctx context.Context, parent unpack.Image, layer ocispec.Descriptor, diffID digest.Digest, o commitOptions) (ocispec.Descriptor, error) {
	now := time.Now().UTC()
	spec := parent.Spec
	spec.Created = &now
	if o.author != "" {
		spec.Author = o.author
	}
	spec.RootFS.DiffIDs = append(slices.Clone(spec.RootFS.DiffIDs), diffID)
	spec.History = append(slices.Clone(spec.History), ocispec.History{
		Created: &now, CreatedBy: "berth commit", Author: o.author, Comment: o.message,
	})
	for _, fn := range o.config {
		fn(&spec.Config)
	}
	config, err := c.writeJSON(ctx, ocispec.MediaTypeImageConfig, spec, nil)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("config: %w", err)
	}
	manifest := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    config,
		Layers:    append(slices.Clone(parent.Layers), layer),
	}
	target, err := c.writeJSON(ctx, ocispec.MediaTypeImageManifest, manifest, func(d ocispec.Descriptor) map[string]string {
		return images.GCRefLabels(d, append([]ocispec.Descriptor{config}, manifest.Layers...), nil)
	})
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("manifest: %w", err)
	}
	return target, nil
}

// writeJSON writes v as a blob of mediaType, labelled with what labels
// returns for its descriptor (when labels is not nil).
func (c *Client) writeJSON(ctx context.Context, mediaType string, v any, labels func(ocispec.Descriptor) map[string]string) (ocispec.Descriptor, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	desc := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
	var opts []content.Opt
	if labels != nil {
		opts = append(opts, content.WithLabels(labels(desc)))
	}
	if err := content.WriteBlob(ctx, c.ContentStore(), "commit-"+desc.Digest.Encoded(), bytes.NewReader(data), desc, opts...); err != nil {
		return ocispec.Descriptor{}, err
	}
	return desc, nil
}
