package metadata

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/identifiers"
	"github.com/berthrt/berth/leases"
	"github.com/berthrt/berth/mount"
	"github.com/berthrt/berth/namespaces"
	"github.com/berthrt/berth/snapshots"
)

// The fields of a snapshot record, v1/<ns>/snapshots/<snapshotter>/<key>/.
var (
	keyBackend     = []byte("backend")
	keyKind        = []byte("kind")
	keyParent      = []byte("parent")
	bucketChildren = []byte("children")
	// bucketCommitting, on an active record, is a commit under way: the
	// committed snapshot's name, the key underneath it, the labels and the
	// lease it gets (see Commit).
	bucketCommitting = []byte("committing")
	keyCommitLease   = []byte("lease")
)

// Snapshotter returns the namespaced view of sn, the snapshotter named
// name (an identifier: overlayfs, native). A snapshot is visible in a
// namespace only through the namespace's record of it,
// v1/<ns>/snapshots/<name>/<key>, which holds its kind, parent, labels,
// times and the key of sn's snapshot underneath ("<ns>/<n>", n unique in
// the file, so that a key removed and made again never meets the old
// snapshot). Two namespaces may therefore use the same keys; each gets
// snapshots of its own underneath.
//
// Remove removes the namespace's record only; garbage collection (this
// view is its SnapshotCollector) removes the snapshots of sn that no
// record names, children before parents: pass
// db.SnapshotCollector(name, sn) to the GC. Under a lease (leases.WithLease
// on the context) a snapshot made by Prepare, View or Commit is recorded
// as the lease's resource. Close closes sn. The view must be the only user
// of sn: the collector removes every snapshot of sn that it has no record
// of.
func (db *DB) Snapshotter(name string, sn snapshots.Snapshotter) snapshots.Snapshotter {
	return &snapshotStore{db: db, name: name, backend: sn}
}

type snapshotStore struct {
	db      *DB
	name    string
	backend snapshots.Snapshotter
}

// snapshotRecord is a namespace's record of one snapshot.
type snapshotRecord struct {
	info    snapshots.Info
	backend string
	// committing is the commit under way of an active snapshot, nil when
	// none.
	committing *commitIntent
}

// commitIntent is what Commit records on the active snapshot before the
// snapshotter commits underneath, so that whoever finds it later (Commit
// again, GC) can finish or undo it from what the snapshotter holds.
type commitIntent struct {
	name, backend, lease string
	labels               map[string]string
}

// namespaceAndKey returns the namespace of ctx and checks key.
func (s *snapshotStore) namespaceAndKey(ctx context.Context, key string) (string, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return "", err
	}
	if err := identifiers.Validate(s.name); err != nil {
		return "", fmt.Errorf("snapshotter: %w", err)
	}
	return ns, snapshots.ValidateKey(key)
}

func (s *snapshotStore) object(ns, key string) string {
	return fmt.Sprintf("snapshot %q of %s in namespace %q", key, s.name, ns)
}

// snapshotsBucket returns v1/<ns>/snapshots/<name>, or nil.
func (s *snapshotStore) snapshotsBucket(tx *bolt.Tx, ns string) *bolt.Bucket {
	bkt := kindBucket(tx, ns, bucketSnapshots)
	if bkt == nil {
		return nil
	}
	return bkt.Bucket([]byte(s.name))
}

func (s *snapshotStore) readRecord(tx *bolt.Tx, ns, key string) (snapshotRecord, error) {
	bkt := s.snapshotsBucket(tx, ns)
	var b *bolt.Bucket
	if bkt != nil {
		b = bkt.Bucket([]byte(key))
	}
	if b == nil {
		return snapshotRecord{}, fmt.Errorf("%s: %w", s.object(ns, key), errdefs.ErrNotFound)
	}
	r := snapshotRecord{
		backend: string(b.Get(keyBackend)),
		info:    snapshots.Info{Name: key, Parent: string(b.Get(keyParent)), Labels: readLabels(b)},
	}
	if k := b.Get(keyKind); len(k) == 1 {
		r.info.Kind = snapshots.Kind(k[0])
	}
	bad := r.backend == "" || r.info.Kind == snapshots.KindUnknown || r.info.Kind > snapshots.KindCommitted
	if cb := b.Bucket(bucketCommitting); cb != nil {
		r.committing = &commitIntent{
			name:    string(cb.Get(keyName)),
			backend: string(cb.Get(keyBackend)),
			lease:   string(cb.Get(keyCommitLease)),
			labels:  readLabels(cb),
		}
		if r.committing.name == "" || r.committing.backend == "" || r.info.Kind != snapshots.KindActive {
			bad = true
		}
	}
	for _, t := range []struct {
		key []byte
		to  *time.Time
	}{{keyCreatedAt, &r.info.Created}, {keyUpdatedAt, &r.info.Updated}} {
		if err := t.to.UnmarshalBinary(b.Get(t.key)); err != nil {
			bad = true
		}
		*t.to = t.to.UTC()
	}
	if bad {
		return snapshotRecord{}, fmt.Errorf("%s: record does not decode: %w", s.object(ns, key), errdefs.ErrInternal)
	}
	return r, nil
}

// writeRecord creates the record r; its key must be free.
func (s *snapshotStore) writeRecord(tx *bolt.Tx, ns string, r snapshotRecord) error {
	bkt, err := createKindBucket(tx, ns, bucketSnapshots)
	if err != nil {
		return err
	}
	if bkt, err = bkt.CreateBucketIfNotExists([]byte(s.name)); err != nil {
		return err
	}
	b, err := bkt.CreateBucket([]byte(r.info.Name))
	if err != nil {
		return err
	}
	if err := b.Put(keyBackend, []byte(r.backend)); err != nil {
		return err
	}
	if err := b.Put(keyKind, []byte{byte(r.info.Kind)}); err != nil {
		return err
	}
	if r.info.Parent != "" {
		if err := b.Put(keyParent, []byte(r.info.Parent)); err != nil {
			return err
		}
		pb := bkt.Bucket([]byte(r.info.Parent))
		children, err := pb.CreateBucketIfNotExists(bucketChildren)
		if err != nil {
			return err
		}
		if err := children.Put([]byte(r.info.Name), nil); err != nil {
			return err
		}
	}
	if err := putTime(b, keyCreatedAt, r.info.Created); err != nil {
		return err
	}
	if err := putTime(b, keyUpdatedAt, r.info.Updated); err != nil {
		return err
	}
	return writeLabels(b, r.info.Labels)
}

// deleteRecord deletes the record r and its entry in its parent's
// children.
func (s *snapshotStore) deleteRecord(tx *bolt.Tx, ns string, r snapshotRecord) error {
	bkt := s.snapshotsBucket(tx, ns)
	if r.info.Parent != "" {
		if pb := bkt.Bucket([]byte(r.info.Parent)); pb != nil && pb.Bucket(bucketChildren) != nil {
			if err := pb.Bucket(bucketChildren).Delete([]byte(r.info.Name)); err != nil {
				return err
			}
		}
	}
	return bkt.DeleteBucket([]byte(r.info.Name))
}

// hasChildren returns the key of one child of key in ns, "" when none.
func (s *snapshotStore) oneChild(tx *bolt.Tx, ns, key string) string {
	bkt := s.snapshotsBucket(tx, ns)
	if bkt == nil || bkt.Bucket([]byte(key)) == nil || bkt.Bucket([]byte(key)).Bucket(bucketChildren) == nil {
		return ""
	}
	k, _ := bkt.Bucket([]byte(key)).Bucket(bucketChildren).Cursor().First()
	return string(k)
}

func (s *snapshotStore) free(tx *bolt.Tx, ns, key string) error {
	if bkt := s.snapshotsBucket(tx, ns); bkt != nil && bkt.Bucket([]byte(key)) != nil {
		return fmt.Errorf("%s: %w", s.object(ns, key), errdefs.ErrAlreadyExists)
	}
	return nil
}

// backendKeyTries bounds the keys create tries underneath: each crash
// during a create can leave one that the sequence hands out again.
const backendKeyTries = 16

// newBackendKey returns a key for a new snapshot of sn: the namespace and
// a number that the file never hands out twice.
func newBackendKey(tx *bolt.Tx, ns string) (string, error) {
	n, err := tx.Bucket(bucketV1).NextSequence()
	if err != nil {
		return "", err
	}
	return ns + "/" + strconv.FormatUint(n, 10), nil
}

// leaseSnapshot puts key under the lease of ctx, if any.
func (s *snapshotStore) leaseSnapshot(ctx context.Context, tx *bolt.Tx, ns, key string) error {
	lease, err := contextLease(ctx)
	if err != nil || lease == "" {
		return err
	}
	return addLeaseResource(tx, ns, lease, leases.Resource{Type: leases.ResourceSnapshotPrefix + s.name, ID: key})
}

func (s *snapshotStore) Stat(ctx context.Context, key string) (snapshots.Info, error) {
	ns, err := s.namespaceAndKey(ctx, key)
	if err != nil {
		return snapshots.Info{}, err
	}
	var r snapshotRecord
	err = s.db.view(ctx, func(tx *bolt.Tx) (err error) {
		r, err = s.readRecord(tx, ns, key)
		return err
	})
	return r.info, err
}

func (s *snapshotStore) Update(ctx context.Context, info snapshots.Info, fieldpaths ...string) (snapshots.Info, error) {
	ns, err := s.namespaceAndKey(ctx, info.Name)
	if err != nil {
		return snapshots.Info{}, err
	}
	var r snapshotRecord
	err = s.db.update(ctx, func(tx *bolt.Tx) (err error) {
		if r, err = s.readRecord(tx, ns, info.Name); err != nil {
			return err
		}
		if r.info.Labels, err = snapshots.UpdateLabels(r.info.Labels, info, fieldpaths); err != nil {
			return err
		}
		r.info.Updated = time.Now().UTC()
		b := s.snapshotsBucket(tx, ns).Bucket([]byte(info.Name))
		if err := writeLabels(b, r.info.Labels); err != nil {
			return err
		}
		return putTime(b, keyUpdatedAt, r.info.Updated)
	})
	return r.info, err
}

// backendOf returns the key underneath key.
func (s *snapshotStore) backendOf(ctx context.Context, key string) (string, error) {
	ns, err := s.namespaceAndKey(ctx, key)
	if err != nil {
		return "", err
	}
	var r snapshotRecord
	err = s.db.view(ctx, func(tx *bolt.Tx) (err error) {
		r, err = s.readRecord(tx, ns, key)
		return err
	})
	return r.backend, err
}

func (s *snapshotStore) Usage(ctx context.Context, key string) (snapshots.Usage, error) {
	bkey, err := s.backendOf(ctx, key)
	if err != nil {
		return snapshots.Usage{}, err
	}
	return s.backend.Usage(ctx, bkey)
}

func (s *snapshotStore) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	bkey, err := s.backendOf(ctx, key)
	if err != nil {
		return nil, err
	}
	return s.backend.Mounts(ctx, bkey)
}

func (s *snapshotStore) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return s.create(ctx, snapshots.KindActive, key, parent, opts)
}

func (s *snapshotStore) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return s.create(ctx, snapshots.KindView, key, parent, opts)
}

// create makes the snapshot underneath and the record in one transaction,
// as containerd does: a failure after the snapshot underneath was made
// removes it again, and a crash in between leaves it for GC. It holds the
// GC lock for reading, so that GC never sees the snapshot underneath
// without its record.
func (s *snapshotStore) create(ctx context.Context, kind snapshots.Kind, key, parent string, opts []snapshots.Opt) ([]mount.Mount, error) {
	ns, labels, err := s.checkCreate(ctx, key, parent, opts)
	if err != nil {
		return nil, err
	}
	s.db.gcLock.RLock()
	defer s.db.gcLock.RUnlock()
	var mounts []mount.Mount
	var refused error
	err = s.db.update(ctx, func(tx *bolt.Tx) (err error) {
		mounts, err = s.createTx(ctx, tx, ns, kind, key, parent, labels, nil)
		if te := (*targetExistsError)(nil); errors.As(err, &te) {
			// Commit the lease createTx put on the target: the caller
			// (an unpack) uses the target and skips its own snapshot.
			refused, err = te, nil
		}
		return err
	})
	if err == nil && refused != nil {
		return nil, refused
	}
	return mounts, err
}

// targetExistsError refuses a create whose LabelSnapshotRef target exists
// already; createTx put the target under the lease of ctx before it.
type targetExistsError struct{ target string }

func (e *targetExistsError) Error() string {
	return fmt.Sprintf("target %s: %v", e.target, errdefs.ErrAlreadyExists)
}

func (e *targetExistsError) Unwrap() error { return errdefs.ErrAlreadyExists }

// checkCreate checks what create is asked before any transaction, and
// returns the namespace and the new snapshot's labels.
func (s *snapshotStore) checkCreate(ctx context.Context, key, parent string, opts []snapshots.Opt) (string, map[string]string, error) {
	ns, err := s.namespaceAndKey(ctx, key)
	if err != nil {
		return "", nil, err
	}
	if parent != "" {
		if err := snapshots.ValidateKey(parent); err != nil {
			return "", nil, fmt.Errorf("parent: %w", err)
		}
	}
	base, err := snapshots.ApplyOpts(opts)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", s.object(ns, key), err)
	}
	return ns, base.Labels, nil
}

// createTx is create's transaction body, in tx: it makes the snapshot key
// underneath, writes its record, puts it under the lease of ctx, and then
// runs then (when not nil), which writes what else must exist with the
// snapshot (a container's record). On any error, then's included, it
// removes the snapshot underneath again; the caller returns the error so
// that tx rolls back. The caller checked key and parent (checkCreate) and
// holds the GC lock for reading. A LabelSnapshotRef target that exists
// already is put under the lease of ctx and the create refused with a
// *targetExistsError, which create commits (the lease) rather than rolls
// back.
func (s *snapshotStore) createTx(ctx context.Context, tx *bolt.Tx, ns string, kind snapshots.Kind, key, parent string, labels map[string]string, then func() error) (mounts []mount.Mount, err error) {
	if target := labels[snapshots.LabelSnapshotRef]; target != "" && snapshots.ValidateKey(target) == nil {
		if s.free(tx, ns, target) != nil {
			if err := s.leaseSnapshot(ctx, tx, ns, target); err != nil {
				return nil, err
			}
			return nil, &targetExistsError{target: s.object(ns, target)}
		}
	}
	if err := s.free(tx, ns, key); err != nil {
		return nil, err
	}
	r := snapshotRecord{info: snapshots.Info{Kind: kind, Name: key, Parent: parent, Labels: labels}}
	var bparent string
	if parent != "" {
		p, err := s.readRecord(tx, ns, parent)
		if err != nil {
			return nil, fmt.Errorf("parent: %w", err)
		}
		if p.info.Kind != snapshots.KindCommitted {
			return nil, fmt.Errorf("parent %s is %s, not committed: %w", s.object(ns, parent), p.info.Kind, errdefs.ErrInvalidArgument)
		}
		bparent = p.backend
	}
	r.info.Created = time.Now().UTC()
	r.info.Updated = r.info.Created
	for try := 1; ; try++ {
		if r.backend, err = newBackendKey(tx, ns); err != nil {
			return nil, err
		}
		if kind == snapshots.KindActive {
			mounts, err = s.backend.Prepare(ctx, r.backend, bparent)
		} else {
			mounts, err = s.backend.View(ctx, r.backend, bparent)
		}
		// A create that a crash cut made its snapshot underneath, but
		// its transaction, and so the sequence number, never reached
		// the file: the number is handed out again and names that
		// leftover, which GC removes. Take the next one.
		if !errdefs.IsAlreadyExists(err) || try == backendKeyTries {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.object(ns, key), err)
	}
	err = s.db.failAt(failCreateRecord)
	if err == nil {
		err = s.writeRecord(tx, ns, r)
	}
	if err == nil {
		err = s.leaseSnapshot(ctx, tx, ns, key)
	}
	if err == nil && then != nil {
		err = then()
	}
	if err != nil {
		return nil, errors.Join(err, s.backend.Remove(context.WithoutCancel(ctx), r.backend))
	}
	return mounts, nil
}

// Commit spans two stores that commit apart: this file and the
// snapshotter's own. So that a crash or an I/O error between them never
// leaves a committed layer without a record (which GC would remove) nor a
// record without its layer, it goes in three steps, each durable:
//
//  1. a transaction records the intent on the active record: the name, the
//     key underneath the committed snapshot to be, labels and lease; GC
//     keeps both keys underneath from then on;
//  2. the snapshotter commits (it syncs the layer's files first);
//  3. a transaction settles the intent from what the snapshotter holds:
//     committed underneath, the active record becomes the committed one;
//     still active, the intent is dropped and the commit failed.
//
// An intent that a crash or a failed step 3 leaves is settled the same way
// by the next Commit of key and by GC (the collector's Walk), before they
// look at the records.
func (s *snapshotStore) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	ns, err := s.namespaceAndKey(ctx, key)
	if err != nil {
		return err
	}
	if err := snapshots.ValidateKey(name); err != nil {
		return err
	}
	base, err := snapshots.ApplyOpts(opts)
	if err != nil {
		return fmt.Errorf("%s: %w", s.object(ns, name), err)
	}
	lease, err := contextLease(ctx)
	if err != nil {
		return err
	}
	s.db.gcLock.RLock()
	defer s.db.gcLock.RUnlock()
	var intent commitIntent
	var active string
	err = s.db.update(ctx, func(tx *bolt.Tx) error {
		if err := s.db.failAt(failCommitIntent); err != nil {
			return err
		}
		if _, err := s.settle(ctx, tx, ns, key); err != nil {
			return err
		}
		r, err := s.readRecord(tx, ns, key)
		if err != nil {
			return err
		}
		if r.info.Kind != snapshots.KindActive {
			return fmt.Errorf("%s is %s, not active: %w", s.object(ns, key), r.info.Kind, errdefs.ErrFailedPrecondition)
		}
		if err := s.free(tx, ns, name); err != nil {
			return err
		}
		bname, err := newBackendKey(tx, ns)
		if err != nil {
			return err
		}
		intent = commitIntent{name: name, backend: bname, lease: lease, labels: base.Labels}
		active = r.backend
		return writeIntent(s.snapshotsBucket(tx, ns).Bucket([]byte(key)), intent)
	})
	if err != nil {
		return err
	}
	err = s.db.failAt(failCommitBackend)
	if err == nil {
		err = s.backend.Commit(ctx, intent.backend, active)
	}
	if err != nil {
		err = fmt.Errorf("%s: %w", s.object(ns, key), err)
	}
	// Step 3 runs whatever step 2 said: an error there may still have
	// committed underneath (a failed fsync), and the record must follow.
	var committed bool
	var taken error // the name, made by another commit meanwhile
	serr := s.db.update(context.WithoutCancel(ctx), func(tx *bolt.Tx) (err error) {
		if err := s.db.failAt(failCommitRecord); err != nil {
			return err
		}
		if committed, err = s.settle(ctx, tx, ns, key); err == nil && !committed {
			taken = s.free(tx, ns, name)
		}
		return err
	})
	switch {
	case serr != nil:
		return errors.Join(err, fmt.Errorf("%s: record the commit (GC finishes it): %w", s.object(ns, key), serr))
	case committed:
		return nil
	case err != nil:
		return err
	case taken != nil:
		return fmt.Errorf("%s committed as %q, which was made meanwhile: %w", s.object(ns, key), name, taken)
	}
	return fmt.Errorf("%s: the snapshotter did not commit %q: %w", s.object(ns, key), intent.backend, errdefs.ErrInternal)
}

// writeIntent records in on the active record b.
func writeIntent(b *bolt.Bucket, in commitIntent) error {
	cb, err := b.CreateBucket(bucketCommitting)
	if err != nil {
		return err
	}
	for k, v := range map[string]string{string(keyName): in.name, string(keyBackend): in.backend, string(keyCommitLease): in.lease} {
		if v == "" {
			continue
		}
		if err := cb.Put([]byte(k), []byte(v)); err != nil {
			return err
		}
	}
	return writeLabels(cb, in.labels)
}

// settle finishes or undoes the commit under way of key in ns, if any,
// from what the snapshotter holds, and says whether it committed: the
// snapshot underneath committed, the active record becomes the committed
// one (under the intent's lease while it exists); not there, the intent is
// dropped. When the name was taken meanwhile (two commits to one name),
// the active record goes, the snapshot underneath is left to GC, and
// settle says false. The caller holds DB.gcLock.
func (s *snapshotStore) settle(ctx context.Context, tx *bolt.Tx, ns, key string) (bool, error) {
	r, err := s.readRecord(tx, ns, key)
	if errdefs.IsNotFound(err) {
		return false, nil
	}
	if err != nil || r.committing == nil {
		return false, err
	}
	in := *r.committing
	info, err := s.backend.Stat(context.WithoutCancel(ctx), in.backend)
	switch {
	case errdefs.IsNotFound(err):
		return false, s.snapshotsBucket(tx, ns).Bucket([]byte(key)).DeleteBucket(bucketCommitting)
	case err != nil:
		return false, fmt.Errorf("%s: stat %q underneath: %w", s.object(ns, key), in.backend, err)
	case info.Kind != snapshots.KindCommitted:
		return false, fmt.Errorf("%s: %q underneath is %s, not committed: %w", s.object(ns, key), in.backend, info.Kind, errdefs.ErrInternal)
	}
	if err := s.deleteRecord(tx, ns, r); err != nil {
		return false, err
	}
	if s.free(tx, ns, in.name) != nil {
		return false, nil
	}
	now := time.Now().UTC()
	c := snapshotRecord{backend: in.backend, info: snapshots.Info{
		Kind: snapshots.KindCommitted, Name: in.name, Parent: r.info.Parent, Labels: in.labels, Created: now, Updated: now,
	}}
	if err := s.writeRecord(tx, ns, c); err != nil {
		return false, err
	}
	if in.lease != "" && leaseBucket(tx, ns, in.lease) != nil {
		res := leases.Resource{Type: leases.ResourceSnapshotPrefix + s.name, ID: in.name}
		if err := addLeaseResource(tx, ns, in.lease, res); err != nil {
			return false, err
		}
	}
	return true, nil
}

func (s *snapshotStore) Remove(ctx context.Context, key string) error {
	ns, err := s.namespaceAndKey(ctx, key)
	if err != nil {
		return err
	}
	err = s.db.update(ctx, func(tx *bolt.Tx) error {
		return s.removeRecord(tx, ns, key)
	})
	if err == nil {
		s.db.dirtied()
	}
	return err
}

// removeRecord deletes the record of key in ns, which Remove and a
// container's delete with its snapshot (containerStore.DeleteWithSnapshot)
// do: ErrNotFound when absent, ErrFailedPrecondition while it is the parent
// of another snapshot. The caller marks the DB dirtied once tx commits.
func (s *snapshotStore) removeRecord(tx *bolt.Tx, ns, key string) error {
	r, err := s.readRecord(tx, ns, key)
	if err != nil {
		return err
	}
	if child := s.oneChild(tx, ns, key); child != "" {
		return fmt.Errorf("%s is the parent of %q: %w", s.object(ns, key), child, errdefs.ErrFailedPrecondition)
	}
	return s.deleteRecord(tx, ns, r)
}

func (s *snapshotStore) Walk(ctx context.Context, fn snapshots.WalkFunc, fs ...string) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	filter, err := snapshots.ParseFilters(fs)
	if err != nil {
		return fmt.Errorf("snapshots of %s in namespace %q: %w", s.name, ns, err)
	}
	// fn runs after the transaction: it may call the store.
	var infos []snapshots.Info
	err = s.db.view(ctx, func(tx *bolt.Tx) error {
		return s.eachRecord(tx, ns, func(r snapshotRecord) error {
			if filter.Match(snapshots.InfoAdaptor(r.info)) {
				infos = append(infos, r.info)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, info := range infos {
		if err := fn(ctx, info); err != nil {
			return err
		}
	}
	return nil
}

// eachRecord calls fn for every record of ns, in key order.
func (s *snapshotStore) eachRecord(tx *bolt.Tx, ns string, fn func(snapshotRecord) error) error {
	bkt := s.snapshotsBucket(tx, ns)
	if bkt == nil {
		return nil
	}
	return bkt.ForEach(func(k, v []byte) error {
		if v != nil {
			return nil
		}
		r, err := s.readRecord(tx, ns, string(k))
		if err != nil {
			return err
		}
		return fn(r)
	})
}

func (s *snapshotStore) Close() error {
	return s.backend.Close()
}
