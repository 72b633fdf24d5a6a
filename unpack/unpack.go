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

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/diff"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/gc"
	"github.com/berthrt/berth/leases"
	"github.com/berthrt/berth/snapshots"
)

// cleanupTimeout bounds removing the temporary snapshot of a failed layer,
// and deleting the lease of an unpack that made its own.
const cleanupTimeout = 10 * time.Second

// LeaseLabel marks the lease an unpack makes for itself (Options.Leases).
const LeaseLabel = "berth.io/unpack"

// leaseExpiry bounds how long the lease an unpack made protects what it
// wrote, should the unpack's process die before it deletes the lease.
const leaseExpiry = 24 * time.Hour

// Store is what an unpack needs of the content store: the layers and the
// config to read, and the config to label.
type Store interface {
	content.Provider
	Update(ctx context.Context, info content.Info, fieldpaths ...string) (content.Info, error)
}

// ErrRefetched is what a Store's reader returns when bytes of a blob that
// it had already handed out were written again: a fetch that the registry
// restarted from the start (it ignored a Range request) while the layer
// was being applied from the fetch's stream. The bytes applied may then
// not be the blob's, so the layer is applied again from the start.
var ErrRefetched = errors.New("the blob was written again from an earlier offset while it was read")

// Arriving is a Store whose readers hand out a blob's bytes while a pull
// is still fetching it, before its digest is checked (services/transfer's,
// for a pull that unpacks); the last byte comes only once the digest
// checks, so an apply cannot succeed on bytes that are not the blob's.
// An apply that fails may have failed on such bytes, though, or been cut
// short by ErrRefetched: Unpack then waits for the pull's verdict (Settle)
// and, when a reader was handed bytes of the blob before it was checked,
// applies the layer again, once, from the checked blob. Settle waits
// until the pull has committed desc and reports whether any reader was
// handed bytes of it before; or returns the pull's error.
type Arriving interface {
	Store
	Settle(ctx context.Context, desc ocispec.Descriptor) (unverified bool, err error)
}

// applyAttempts bounds the applies of one layer: a registry that ignores
// Range each time a fetch is resumed must not keep an unpack going.
const applyAttempts = 3

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
	// Leases makes the lease an unpack holds when ctx carries none
	// (leases.WithLease): one labelled LeaseLabel, deleted when Unpack
	// returns. With neither, Unpack refuses to run.
	Leases leases.Manager
	// Progress, when not nil, is told of each layer's state, from the
	// goroutine that called Unpack.
	Progress func(layer ocispec.Descriptor, s Status)
	// Ahead is how many layers may be applied ahead of their parents at
	// once, each into a staging snapshot (see stage.go), beside the one
	// applied in place; 0 applies one layer after the other. Off by
	// default: on a 2-CPU host with a busy disk it was slower (see
	// BenchmarkUnpackOverlay), and a staging snapshot's folder stays
	// until garbage collection removes it.
	Ahead int
}

// SnapshotLabel returns the label that keeps the snapshots of the
// snapshotter name: berth.io/gc.ref.snapshot.<name>.
func SnapshotLabel(name string) string { return gc.LabelRefSnapshot + "." + name }

// Unpack applies img's layers, bottom first, into committed snapshots
// named by their chain IDs, skipping those that exist, then labels img's
// config blob so that garbage collection keeps the top one (and its
// parents) while the image exists. It returns the top chain ID ("" for an
// image without layers).
//
// All of it runs under ctx's lease, or one of its own made by o.Leases:
// a temporary snapshot being applied and a layer committed before the
// config is labelled are reached by no other root, so a collection
// without the lease would remove them under the unpack.
func Unpack(ctx context.Context, img Image, o Options) (_ string, err error) {
	if _, ok := leases.FromContext(ctx); !ok {
		if o.Leases == nil {
			return "", fmt.Errorf("unpack %s: no lease on the context and no Options.Leases to make one: %w", img.Manifest.Digest, errdefs.ErrInvalidArgument)
		}
		l, err := o.Leases.Create(ctx, leases.Lease{Labels: map[string]string{
			LeaseLabel:         img.Manifest.Digest.String(),
			leases.ExpireLabel: time.Now().Add(leaseExpiry).UTC().Format(time.RFC3339Nano),
		}})
		if err != nil {
			return "", fmt.Errorf("unpack %s: lease: %w", img.Manifest.Digest, err)
		}
		defer func() {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
			defer cancel()
			if derr := o.Leases.Delete(dctx, l.ID); derr != nil {
				err = errors.Join(err, fmt.Errorf("unpack %s: delete lease %s: %w", img.Manifest.Digest, l.ID, derr))
			}
		}()
		ctx = leases.WithLease(ctx, l.ID)
	}
	diffIDs := img.DiffIDs()
	if len(diffIDs) != len(img.Layers) {
		return "", fmt.Errorf("image %s: %d diff IDs for %d layers: %w", img.Manifest.Digest, len(diffIDs), len(img.Layers), errdefs.ErrInvalidArgument)
	}
	ids, chainIDs := make([]string, len(diffIDs)), make([]string, len(diffIDs))
	for i := range diffIDs {
		ids[i], chainIDs[i] = diffIDs[i].String(), identity.ChainID(diffIDs[:i+1]).String()
	}
	st := o.newStager(img.Layers, ids, chainIDs, o.Ahead)
	parent := ""
	for i, layer := range img.Layers {
		err := o.layer(ctx, layer, ids[i], chainIDs[i], parent, st, i)
		if ae := (errAdopt{}); errors.As(err, &ae) {
			// The staged layer could not be adopted: in place, then.
			st.staged[i].err = err
			err = o.layer(ctx, layer, ids[i], chainIDs[i], parent, st, i)
		}
		settled := false
		for attempt := 1; attempt < applyAttempts && o.applyAgain(ctx, layer, err, &settled); attempt++ {
			// layer removed what it had applied, a staged layer's files
			// too once adopted: in place, then, in a new snapshot.
			if sd := st.staged[i]; sd != nil && sd.err == nil {
				sd.err = err
			}
			err = o.layer(ctx, layer, ids[i], chainIDs[i], parent, st, i)
		}
		if err != nil {
			err = fmt.Errorf("unpack layer %d (%s) of %s into %s: %w", i, layer.Digest, img.Manifest.Digest, o.SnapshotterName, err)
			return "", errors.Join(err, st.close(ctx))
		}
		parent = chainIDs[i]
	}
	if err := st.close(ctx); err != nil {
		return "", fmt.Errorf("unpack %s: %w", img.Manifest.Digest, err)
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

// layer makes the committed snapshot chainID: layer i applied on parent,
// or adopted from st when it was staged there.
func (o Options) layer(ctx context.Context, layer ocispec.Descriptor, diffID, chainID, parent string, st *stager, i int) (err error) {
	key, err := tempKey(chainID)
	if err != nil {
		return err
	}
	// The label makes a namespaced snapshotter answer AlreadyExists,
	// and lease the snapshot, when chainID exists.
	mounts, err := o.Snapshotter.Prepare(ctx, key, parent, snapshots.WithLabels(map[string]string{snapshots.LabelSnapshotRef: chainID}))
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
	if parent != "" {
		if _, lowers, ok := diff.WritableDir(mounts); ok && len(lowers) > 0 {
			st.startAbove(ctx, i)
		}
	}
	if staged := st.wait(i); staged != nil {
		// An error leaves part of the layer in key, which is removed.
		if err := adopt(staged, mounts); err != nil {
			return err
		}
	} else {
		applied, err := o.Applier.Apply(ctx, layer, mounts, o.Content)
		if err != nil {
			return err
		}
		if applied.Digest.String() != diffID {
			return fmt.Errorf("diff ID %s, the config says %s: %w", applied.Digest, diffID, errdefs.ErrFailedPrecondition)
		}
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

// applyAgain says whether the layer whose apply failed with err is
// applied again. With an Arriving store: once, after the pull has
// committed the blob, when the failed apply may have read bytes that were
// not the blob's (settled records that the verdict came: the next apply
// reads checked bytes only, and its error is the layer's). With another
// store: when its reader said the bytes it handed out were fetched again.
func (o Options) applyAgain(ctx context.Context, layer ocispec.Descriptor, err error, settled *bool) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	refetched := errors.Is(err, ErrRefetched)
	ar, ok := o.Content.(Arriving)
	if !ok {
		return refetched
	}
	if *settled {
		return false
	}
	unverified, serr := ar.Settle(ctx, layer)
	if serr != nil {
		return false // the pull failed: its error is the one to return
	}
	*settled = true
	return refetched || unverified
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
