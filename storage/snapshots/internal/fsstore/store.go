package fsstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/fsperm"
	"github.com/berthrt/berth/mount"
	"github.com/berthrt/berth/snapshots"
)

// Driver is what a snapshotter adds to the store.
type Driver interface {
	// Create fills dir, a new empty folder, for a snapshot of kind on top
	// of parents, the folders of its parent chain, nearest first.
	Create(dir string, kind snapshots.Kind, parents []string) error
	// Mounts returns the mounts of the active snapshot or view in dir.
	Mounts(dir string, kind snapshots.Kind, parents []string) []mount.Mount
	// Usage measures what the snapshot in dir takes of its own.
	Usage(dir string) (snapshots.Usage, error)
}

// A Driver may also be a Sealer or a Remover; the store then calls it
// instead of doing nothing or os.RemoveAll.

// Sealer is a Driver whose committed snapshots are read-only by more than
// convention (btrfs sets its read-only flag on the subvolume).
type Sealer interface {
	// Seal is called on the folder of an active snapshot being
	// committed, before its record changes; when the record cannot
	// change, Seal(dir, false) undoes it, and New calls Seal(dir, false)
	// on every active snapshot (a crash may have come between the two).
	// Unsealing what is not sealed must change nothing.
	Seal(dir string, sealed bool) error
}

// Remover is a Driver whose folders os.RemoveAll cannot remove (a btrfs
// subvolume, read-only or holding read-only files).
type Remover interface {
	// RemoveAll removes dir and everything in it; dir may be half made.
	RemoveAll(dir string) error
}

const (
	// openTimeout is how long New waits for the lock of metadata.db that
	// another process holds.
	openTimeout = 2 * time.Second
	// dirMode keeps the layers' folders from other users: a layer may hold
	// setuid binaries.
	dirMode = 0o700
)

var (
	bucketV1       = []byte("v1")
	bucketKeys     = []byte("keys")
	bucketChildren = []byte("children")
	bucketIDs      = []byte("ids")
	bucketLabels   = []byte("labels")

	keyID      = []byte("id")
	keyKind    = []byte("kind")
	keyParent  = []byte("parent")
	keyCreated = []byte("created")
	keyUpdated = []byte("updated")
	keyInodes  = []byte("inodes")
	keySize    = []byte("size")
)

// store is the Snapshotter of one root and driver.
type store struct {
	name   string // for errors: "overlayfs", "native"
	root   string
	db     *bolt.DB
	driver Driver
	// failpoint, set only by tests (WithFailpoint), is called at each
	// step named Fail*; an error it returns fails the operation there.
	failpoint func(step string) error
}

// The steps that tests inject a failure or a crash at (WithFailpoint).
const (
	// FailCommitSealed: a Sealer sealed the snapshot being committed;
	// before the transaction that records the commit.
	FailCommitSealed = "commit/sealed"
)

// Option configures New.
type Option func(*store)

// WithFailpoint makes the snapshotter call fn at each step named Fail*,
// for tests of failures and crashes there; production code never sets it.
func WithFailpoint(fn func(step string) error) Option {
	return func(s *store) { s.failpoint = fn }
}

// failAt returns the error injected at step, nil when none.
func (s *store) failAt(step string) error {
	if s.failpoint == nil {
		return nil
	}
	return s.failpoint(step)
}

// New opens (creating when absent) the snapshotter of driver in root,
// named name in errors, removes the folders that no record names, and
// unseals the active snapshots that a Sealer left sealed (unsealActive).
func New(name, root string, driver Driver, opts ...Option) (snapshots.Snapshotter, error) {
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("%s: root %q is not absolute: %w", name, root, errdefs.ErrInvalidArgument)
	}
	// Tightened when an earlier release (or an administrator) made them
	// looser: the layers are reached through them.
	for _, dir := range []string{root, filepath.Join(root, "snapshots")} {
		if err := fsperm.Restrict(dir, dirMode); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	// A hint to the filesystem, not a condition of a working snapshotter:
	// a failure is logged, and the snapshotter opens (see spreadFolders).
	if err := spreadFolders(filepath.Join(root, "snapshots")); err != nil {
		slog.Warn("snapshot folders stay in one block group: pulls of many small files may be slower", "snapshotter", name, "error", err)
	}
	path := filepath.Join(root, "metadata.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: openTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("%s: %s is locked by another process: %w", name, path, errdefs.ErrUnavailable)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: open %s: %w", name, path, err)
	}
	s := &store{name: name, root: root, db: db, driver: driver}
	for _, o := range opts {
		o(s)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		v1, err := tx.CreateBucketIfNotExists(bucketV1)
		if err != nil {
			return err
		}
		for _, b := range [][]byte{bucketKeys, bucketChildren, bucketIDs} {
			if _, err := v1.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = s.removeOrphans()
	}
	if err == nil {
		err = s.unsealActive()
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("%s: %w", name, err), db.Close())
	}
	return s, nil
}

// removeOrphans removes the folders under snapshots/ that ids does not
// name: left by a crash during Prepare or Remove.
func (s *store) removeOrphans() error {
	entries, err := os.ReadDir(s.snapshotsDir())
	if err != nil {
		return err
	}
	var errs []error
	err = s.db.View(func(tx *bolt.Tx) error {
		ids := tx.Bucket(bucketV1).Bucket(bucketIDs)
		for _, e := range entries {
			if id, err := strconv.ParseUint(e.Name(), 10, 64); err == nil && ids.Get(idKey(id)) != nil {
				continue
			}
			if err := s.removeAll(filepath.Join(s.snapshotsDir(), e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
		return nil
	})
	return errors.Join(append(errs, err)...)
}

// unsealActive unseals the folder of every active snapshot when the
// driver is a Sealer: Commit seals the folder before the transaction that
// records the commit, so a crash between the two leaves an active
// snapshot sealed (a btrfs subvolume read-only) that its container or
// unpack could no longer write. Unsealing one that is not sealed changes
// nothing; it costs a call per active snapshot at open.
func (s *store) unsealActive() error {
	sealer, ok := s.driver.(Sealer)
	if !ok {
		return nil
	}
	var dirs []string
	err := s.db.View(func(tx *bolt.Tx) error {
		keys, _, _ := buckets(tx)
		return keys.ForEachBucket(func(k []byte) error {
			r, err := s.read(tx, string(k))
			if err != nil {
				return err
			}
			if r.info.Kind == snapshots.KindActive {
				dirs = append(dirs, s.dir(r.id))
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	var errs []error
	for _, dir := range dirs {
		if err := sealer.Seal(dir, false); err != nil {
			errs = append(errs, fmt.Errorf("unseal the active snapshot in %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}

// removeAll removes a snapshot's folder the driver's way.
func (s *store) removeAll(dir string) error {
	if r, ok := s.driver.(Remover); ok {
		return r.RemoveAll(dir)
	}
	return os.RemoveAll(dir)
}

func (s *store) snapshotsDir() string { return filepath.Join(s.root, "snapshots") }

func (s *store) dir(id uint64) string {
	return filepath.Join(s.snapshotsDir(), strconv.FormatUint(id, 10))
}

func idKey(id uint64) []byte { return binary.BigEndian.AppendUint64(nil, id) }

// record is one snapshot as stored.
type record struct {
	info  snapshots.Info
	id    uint64
	usage snapshots.Usage // committed only
}

func (s *store) notFound(key string) error {
	return fmt.Errorf("%s: snapshot %q: %w", s.name, key, errdefs.ErrNotFound)
}

func buckets(tx *bolt.Tx) (keys, children, ids *bolt.Bucket) {
	v1 := tx.Bucket(bucketV1)
	return v1.Bucket(bucketKeys), v1.Bucket(bucketChildren), v1.Bucket(bucketIDs)
}

// read reads the record of key; ErrNotFound when absent.
func (s *store) read(tx *bolt.Tx, key string) (record, error) {
	keys, _, _ := buckets(tx)
	b := keys.Bucket([]byte(key))
	if b == nil {
		return record{}, s.notFound(key)
	}
	r := record{info: snapshots.Info{
		Name:   key,
		Kind:   snapshots.KindUnknown,
		Parent: string(b.Get(keyParent)),
		Labels: readLabels(b),
	}}
	bad := func(what string) error {
		return fmt.Errorf("%s: snapshot %q: bad %s: %w", s.name, key, what, errdefs.ErrInternal)
	}
	if raw := b.Get(keyID); len(raw) == 8 {
		r.id = binary.BigEndian.Uint64(raw)
	} else {
		return record{}, bad("id")
	}
	if raw := b.Get(keyKind); len(raw) == 1 {
		r.info.Kind = snapshots.Kind(raw[0])
	}
	if r.info.Kind == snapshots.KindUnknown || r.info.Kind > snapshots.KindCommitted {
		return record{}, bad("kind")
	}
	for _, t := range []struct {
		key []byte
		to  *time.Time
	}{{keyCreated, &r.info.Created}, {keyUpdated, &r.info.Updated}} {
		if err := t.to.UnmarshalBinary(b.Get(t.key)); err != nil {
			return record{}, bad(string(t.key))
		}
		*t.to = t.to.UTC()
	}
	if r.info.Kind == snapshots.KindCommitted {
		var n1, n2 int
		r.usage.Inodes, n1 = binary.Varint(b.Get(keyInodes))
		r.usage.Size, n2 = binary.Varint(b.Get(keySize))
		if n1 <= 0 || n2 <= 0 {
			return record{}, bad("usage")
		}
	}
	return r, nil
}

// write stores r under its name, replacing what was there.
func write(tx *bolt.Tx, r record) error {
	keys, _, _ := buckets(tx)
	name := []byte(r.info.Name)
	if keys.Bucket(name) != nil {
		if err := keys.DeleteBucket(name); err != nil {
			return err
		}
	}
	b, err := keys.CreateBucket(name)
	if err != nil {
		return err
	}
	puts := map[string][]byte{
		string(keyID):   idKey(r.id),
		string(keyKind): {byte(r.info.Kind)},
	}
	if r.info.Parent != "" {
		puts[string(keyParent)] = []byte(r.info.Parent)
	}
	if r.info.Kind == snapshots.KindCommitted {
		puts[string(keyInodes)] = binary.AppendVarint(nil, r.usage.Inodes)
		puts[string(keySize)] = binary.AppendVarint(nil, r.usage.Size)
	}
	for k, v := range puts {
		if err := b.Put([]byte(k), v); err != nil {
			return err
		}
	}
	for k, t := range map[string]time.Time{string(keyCreated): r.info.Created, string(keyUpdated): r.info.Updated} {
		raw, err := t.UTC().MarshalBinary()
		if err != nil {
			return err
		}
		if err := b.Put([]byte(k), raw); err != nil {
			return err
		}
	}
	if len(r.info.Labels) == 0 {
		return nil
	}
	lb, err := b.CreateBucket(bucketLabels)
	if err != nil {
		return err
	}
	for k, v := range r.info.Labels {
		if err := lb.Put([]byte(k), []byte(v)); err != nil {
			return err
		}
	}
	return nil
}

func readLabels(b *bolt.Bucket) map[string]string {
	lb := b.Bucket(bucketLabels)
	if lb == nil {
		return nil
	}
	labels := map[string]string{}
	_ = lb.ForEach(func(k, v []byte) error {
		labels[string(k)] = string(v)
		return nil
	})
	return labels
}

// chain returns the folders of parent and its ancestors, nearest first,
// with parent's id; parent must be committed.
func (s *store) chain(tx *bolt.Tx, parent string) ([]string, uint64, error) {
	if parent == "" {
		return nil, 0, nil
	}
	var dirs []string
	var first uint64
	for key := parent; key != ""; {
		r, err := s.read(tx, key)
		if err != nil {
			if key == parent {
				return nil, 0, fmt.Errorf("parent: %w", err)
			}
			return nil, 0, fmt.Errorf("%s: ancestor %q of %q missing: %w", s.name, key, parent, errdefs.ErrInternal)
		}
		if r.info.Kind != snapshots.KindCommitted {
			return nil, 0, fmt.Errorf("%s: parent %q is %s, not committed: %w", s.name, key, r.info.Kind, errdefs.ErrInvalidArgument)
		}
		if key == parent {
			first = r.id
		}
		dirs = append(dirs, s.dir(r.id))
		key = r.info.Parent
	}
	return dirs, first, nil
}

// withCtx refuses to start a transaction once ctx is done.
func withCtx(ctx context.Context, run func(func(*bolt.Tx) error) error, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return run(fn)
}

func notExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
