package unpack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/diff"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/storage/content"
	"github.com/berthrt/berth/storage/metadata"
	"github.com/berthrt/berth/storage/snapshots"
)

// cleanupTimeout bounds removing the temporary snapshot of a failed layer.
const cleanupTimeout = 10 * time.Second

// Store is what an unpack needs of the content store: the layers and the
// config to read, and the config to label.
type Store interface {
	content.Provider
	Update(ctx context.Context, info content.Info, fieldpaths ...string) (content.Info, error)
}

// Status is the state of one layer of an unpack.
type Status string

const (
	// StatusUnpacking: the layer is being applied.
	StatusUnpacking Status = "unpacking"
	// StatusUnpacked: the layer's snapshot is committed.
	StatusUnpacked Status = "unpacked"
	// StatusExists: the layer's snapshot was there already.
	StatusExists Status = "exists"
)

// Options say where an image is unpacked.
type Options struct {
	// Content holds the image's blobs (namespaced, as the snapshotter).
	Content Store
	// Snapshotter receives the layers; SnapshotterName is its name in
	// the berth.io/gc.ref.snapshot.<name> label.
	Snapshotter     snapshots.Snapshotter
	SnapshotterName string
	// Applier applies a layer onto a snapshot's mounts.
	Applier diff.Applier
	// Progress, when not nil, is told of each layer's state, from the
	// goroutine that called Unpack.
	Progress func(layer ocispec.Descriptor, s Status)
}

// SnapshotLabel returns the label that keeps the snapshots of the
// snapshotter name: berth.io/gc.ref.snapshot.<name>.
func SnapshotLabel(name string) string { return metadata.LabelGCRefSnapshot + "." + name }

// Unpack applies img's layers, bottom first, into committed snapshots
// named by their chain IDs, skipping those that exist, then labels img's
// config blob so that garbage collection keeps the top one (and its
// parents) while the image exists. It returns the top chain ID ("" for an
// image without layers).
func Unpack(ctx context.Context, img Image, o Options) (string, error) {
	diffIDs := img.DiffIDs()
	if len(diffIDs) != len(img.Layers) {
		return "", fmt.Errorf("image %s: %d diff IDs for %d layers: %w", img.Manifest.Digest, len(diffIDs), len(img.Layers), errdefs.ErrInvalidArgument)
	}
	parent := ""
	for i, layer := range img.Layers {
		chainID := identity.ChainID(diffIDs[:i+1]).String()
		if err := o.layer(ctx, layer, diffIDs[i].String(), chainID, parent); err != nil {
			return "", fmt.Errorf("unpack layer %d (%s) of %s into %s: %w", i, layer.Digest, img.Manifest.Digest, o.SnapshotterName, err)
		}
		parent = chainID
	}
	if parent == "" {
		return "", nil
	}
	label := SnapshotLabel(o.SnapshotterName)
	info := content.Info{Digest: img.Config.Digest, Labels: map[string]string{label: parent}}
	if _, err := o.Content.Update(ctx, info, "labels."+label); err != nil {
		return "", fmt.Errorf("unpack %s: label the config %s: %w", img.Manifest.Digest, img.Config.Digest, err)
	}
	return parent, nil
}

// layer makes the committed snapshot chainID: layer applied on parent.
func (o Options) layer(ctx context.Context, layer ocispec.Descriptor, diffID, chainID, parent string) (err error) {
	key, err := tempKey(chainID)
	if err != nil {
		return err
	}
	// The label makes a namespaced snapshotter answer AlreadyExists,
	// and lease the snapshot, when chainID exists.
	mounts, err := o.Snapshotter.Prepare(ctx, key, parent, snapshots.WithLabels(map[string]string{metadata.LabelSnapshotRef: chainID}))
	if errdefs.IsAlreadyExists(err) {
		if _, serr := o.Snapshotter.Stat(ctx, chainID); serr == nil {
			o.report(layer, StatusExists)
			return nil
		}
	}
	if err != nil {
		return err
	}
	committed := false
	defer func() {
		if committed {
			return
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if rerr := o.Snapshotter.Remove(cctx, key); rerr != nil && !errdefs.IsNotFound(rerr) {
			err = errors.Join(err, fmt.Errorf("remove temporary snapshot %q: %w", key, rerr))
		}
	}()
	o.report(layer, StatusUnpacking)
	applied, err := o.Applier.Apply(ctx, layer, mounts, o.Content)
	if err != nil {
		return err
	}
	if applied.Digest.String() != diffID {
		return fmt.Errorf("diff ID %s, the config says %s: %w", applied.Digest, diffID, errdefs.ErrFailedPrecondition)
	}
	if err := o.Snapshotter.Commit(ctx, chainID, key); err != nil {
		if errdefs.IsAlreadyExists(err) {
			// Another unpack committed the same layers meanwhile.
			o.report(layer, StatusExists)
			return nil
		}
		return err
	}
	committed = true
	o.report(layer, StatusUnpacked)
	return nil
}

func (o Options) report(layer ocispec.Descriptor, s Status) {
	if o.Progress != nil {
		o.Progress(layer, s)
	}
}

// tempKey returns a key for the active snapshot a layer is applied in,
// unique so that concurrent unpacks of one layer do not meet.
func tempKey(chainID string) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return fmt.Sprintf("unpack-%s-%s", hex.EncodeToString(b[:]), chainID), nil
}
