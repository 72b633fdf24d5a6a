package unpack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/archive"
	"github.com/berthrt/berth/diff"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/mount"
)

// Layers above the first are applied ahead, concurrently, each into a
// staging snapshot of its own without parent, while the layers below are
// still being applied and committed. A chain ID's snapshot must have its
// parent at Prepare, so the layer is then adopted in order: the snapshot
// of its chain ID is prepared on its committed parent as always, the
// staged files are renamed into its (empty) upper folder, the folders the
// layer made without describing them get their metadata from the lower
// folders (what Apply with parents would have given them), and only then
// is it committed. Until that commit nothing names the chain ID, so a
// crash or an error at any point leaves active snapshots only, which the
// unpack removes or garbage collection does (they have no root).
//
// Applying a layer without its lower folders gives the same upper folder
// as applying it on them in all but two ways, both handled: folders made
// for entries (their metadata; see above), and a hardlink to a file only
// in a lower layer, which fails staging: that layer, and any layer whose
// staging fails or whose snapshots are not shaped for it (staging needs a
// writable bind mount, adopting an overlay with an upperdir, both on one
// filesystem: the overlayfs snapshotter; the native one copies its parent
// and so cannot stage), is applied in place on its parent instead, as
// without staging.

// staged is a layer applied ahead into the staging snapshot key.
type staged struct {
	key  string
	done chan struct{} // closed when the fields below are set

	dir  string   // the snapshot's folder that holds the layer's files
	made []string // folders made for entries without an entry of their own
	err  error    // staging failed: apply the layer in place
}

// stager applies layers ahead; the goroutine of Unpack owns it, and its
// workers each own one staged until they close its done.
type stager struct {
	o        Options
	layers   []ocispec.Descriptor
	diffIDs  []string
	chainIDs []string
	n        int       // workers at most
	staged   []*staged // by layer index; nil for one not staged
	started  bool
	wg       sync.WaitGroup
	cancel   context.CancelFunc
}

// errNotStageable says a snapshotter's mounts cannot be staged into.
var errNotStageable = errors.New("mounts are neither a writable bind mount (staging) nor an overlay with an upperdir (adopting)")

func (o Options) newStager(layers []ocispec.Descriptor, diffIDs, chainIDs []string, n int) *stager {
	return &stager{o: o, layers: layers, diffIDs: diffIDs, chainIDs: chainIDs, n: n, staged: make([]*staged, len(layers))}
}

// startAbove starts applying ahead, once, each layer above i whose chain
// ID the snapshotter lacks, at most n at once. Unpack calls it when the
// snapshot of layer i, prepared on a parent, is an overlay with an
// upperdir: the snapshotter is one that staged layers can be adopted
// into. (The native snapshotter copies the parent, and a layer staged
// for it would only be applied twice.)
func (s *stager) startAbove(ctx context.Context, i int) {
	if s.started || s.n < 1 {
		return
	}
	s.started = true
	ctx, s.cancel = context.WithCancel(ctx)
	sem := make(chan struct{}, s.n)
	for j := i + 1; j < len(s.layers); j++ {
		if _, err := s.o.Snapshotter.Stat(ctx, s.chainIDs[j]); err == nil {
			continue // there already
		}
		key, err := tempKey("stage-" + s.chainIDs[j])
		if err != nil {
			continue
		}
		st := &staged{key: key, done: make(chan struct{})}
		s.staged[j] = st
		s.wg.Go(func() {
			defer close(st.done)
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-ctx.Done():
				st.err = ctx.Err()
				return
			}
			st.err = s.o.applyStaged(ctx, st, s.layers[j], s.diffIDs[j])
		})
	}
}

// applyStaged applies layer into the new staging snapshot st.key.
func (o Options) applyStaged(ctx context.Context, st *staged, layer ocispec.Descriptor, diffID string) error {
	mounts, err := o.Snapshotter.Prepare(ctx, st.key, "")
	if err != nil {
		return err
	}
	dir, lowers, ok := diff.WritableDir(mounts)
	if !ok || len(lowers) > 0 {
		return errNotStageable
	}
	reported := false
	applied, err := o.Applier.Apply(ctx, layer, mounts, o.Content,
		archive.WithConvention(archive.Overlay),
		archive.WithMadeParents(func(names []string) { st.made, reported = names, true }))
	switch {
	case err != nil:
		return err
	case !reported: // an Applier that does not run archive.Apply here
		return fmt.Errorf("applier does not report the folders it made: %w", errdefs.ErrNotImplemented)
	case applied.Digest.String() != diffID:
		return fmt.Errorf("diff ID %s, the config says %s: %w", applied.Digest, diffID, errdefs.ErrFailedPrecondition)
	}
	st.dir = dir
	return nil
}

// wait returns layer i once staged: nil when it is not staged or its
// staging failed (it is then applied in place).
func (s *stager) wait(i int) *staged {
	st := s.staged[i]
	if st == nil {
		return nil
	}
	<-st.done
	if st.err != nil {
		return nil
	}
	return st
}

// close stops the workers, waits for them and removes every staging
// snapshot (on ctx without its cancellation).
func (s *stager) close(ctx context.Context) error {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	var errs []error
	for _, st := range s.staged {
		if st == nil {
			continue
		}
		if err := s.o.Snapshotter.Remove(ctx, st.key); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove staging snapshot %q: %w", st.key, err))
		}
	}
	return errors.Join(errs...)
}

// errAdopt marks an error of adopt: the layer is then applied in place.
type errAdopt struct{ error }

func (e errAdopt) Unwrap() error { return e.error }

// adopt moves st's files into the fresh snapshot mounts (an overlay with
// an upperdir) and gives the folders the layer made the metadata of their
// lower folders. On error mounts may hold part of the layer: the caller
// discards the snapshot.
func adopt(st *staged, mounts []mount.Mount) error {
	upper, lowers, ok := diff.WritableDir(mounts)
	if !ok || len(lowers) == 0 {
		return errAdopt{errNotStageable}
	}
	if err := move(st.dir, upper); err != nil {
		return errAdopt{err}
	}
	if err := archive.InheritParents(upper, lowers, st.made); err != nil {
		return errAdopt{err}
	}
	return nil
}

// move renames every entry of the folder from into the empty folder to,
// never replacing anything.
func move(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	names, err := src.Readdirnames(-1)
	if err != nil {
		return err
	}
	dst, err := unix.Open(to, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: to, Err: err}
	}
	defer unix.Close(dst)
	for _, n := range names {
		if err := unix.Renameat2(int(src.Fd()), n, dst, n, unix.RENAME_NOREPLACE); err != nil {
			return &os.PathError{Op: "rename", Path: n, Err: err}
		}
	}
	return nil
}
