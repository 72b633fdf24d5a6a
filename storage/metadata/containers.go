package metadata

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/berthrt/berth/containers"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/identifiers"
	"github.com/berthrt/berth/mount"
	"github.com/berthrt/berth/namespaces"
	"github.com/berthrt/berth/snapshots"
)

// Containers returns the container store of db.
func (db *DB) Containers() containers.Store {
	return &containerStore{db: db}
}

type containerStore struct {
	db *DB
}

func (s *containerStore) Get(ctx context.Context, id string) (containers.Container, error) {
	ns, err := namespaceAndID(ctx, id)
	if err != nil {
		return containers.Container{}, err
	}
	var c containers.Container
	err = s.db.view(ctx, func(tx *bolt.Tx) error {
		cb := containerBucket(tx, ns, id)
		if cb == nil {
			return containerNotFound(ns, id)
		}
		c, err = readContainer(id, cb)
		return err
	})
	return c, err
}

func (s *containerStore) List(ctx context.Context, fs ...string) ([]containers.Container, error) {
	return listObjects(ctx, s.db, bucketContainers, "containers", fs, func(_, id string, b *bolt.Bucket) (containers.Container, error) {
		return readContainer(id, b)
	}, containerAdaptor)
}

func (s *containerStore) Create(ctx context.Context, c containers.Container) (containers.Container, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return containers.Container{}, err
	}
	if err := validateContainer(c); err != nil {
		return containers.Container{}, err
	}
	var stored containers.Container
	err = s.db.update(ctx, func(tx *bolt.Tx) (err error) {
		stored, err = createContainerRecord(tx, ns, c)
		return err
	})
	return stored, err
}

// CreateWithSnapshot stores c and makes its snapshot in one transaction:
// the snapshot's Prepare (View) transaction body (snapshotStore.createTx),
// the container's record written inside it. A failure anywhere rolls both
// records back and removes the snapshot underneath again; a crash leaves
// that snapshot to GC, as a crashed Prepare does. It holds the GC lock for
// reading as Prepare does. The snapshotter must be a namespaced view of
// this DB (DB.Snapshotter), as berthd's snapshots API serves them.
func (s *containerStore) CreateWithSnapshot(ctx context.Context, c containers.Container, snap containers.NewSnapshot, snapshotter func(name string) (snapshots.Snapshotter, error)) (containers.Container, []mount.Mount, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return containers.Container{}, nil, err
	}
	if err := validateContainer(c); err != nil {
		return containers.Container{}, nil, err
	}
	if c.Snapshotter == "" || c.SnapshotKey == "" {
		return containers.Container{}, nil, fmt.Errorf("container %q: a new snapshot needs the container's snapshotter and snapshot key: %w", c.ID, errdefs.ErrInvalidArgument)
	}
	if snapshotter == nil {
		return containers.Container{}, nil, fmt.Errorf("container %q: create with a snapshot needs the snapshotters: %w", c.ID, errdefs.ErrInvalidArgument)
	}
	ss, err := s.snapshotStore(c.Snapshotter, snapshotter)
	if err != nil {
		return containers.Container{}, nil, fmt.Errorf("container %q: snapshot %q: %w", c.ID, c.SnapshotKey, err)
	}
	kind := snapshots.KindActive
	if snap.View {
		kind = snapshots.KindView
	}
	_, labels, err := ss.checkCreate(ctx, c.SnapshotKey, snap.Parent, []snapshots.Opt{snapshots.WithLabels(snap.Labels)})
	if err != nil {
		return containers.Container{}, nil, fmt.Errorf("container %q: %w", c.ID, err)
	}
	s.db.gcLock.RLock()
	defer s.db.gcLock.RUnlock()
	var (
		stored containers.Container
		mounts []mount.Mount
	)
	err = s.db.update(ctx, func(tx *bolt.Tx) (err error) {
		// The container's id first: a taken one costs no snapshot made
		// and removed underneath.
		if containerBucket(tx, ns, c.ID) != nil {
			return containerExists(ns, c.ID)
		}
		mounts, err = ss.createTx(ctx, tx, ns, kind, c.SnapshotKey, snap.Parent, labels, func() (err error) {
			if err := s.db.failAt(failCreateContainerRecord); err != nil {
				return err
			}
			stored, err = createContainerRecord(tx, ns, c)
			return err
		})
		if err != nil {
			return fmt.Errorf("container %q: %w", c.ID, err)
		}
		return nil
	})
	if err != nil {
		return containers.Container{}, nil, err
	}
	return stored, mounts, nil
}

// snapshotStore returns the snapshotter name that snapshotter returns,
// which must be a namespaced view of this DB: the snapshot's record and the
// container's go in one transaction of this file.
func (s *containerStore) snapshotStore(name string, snapshotter func(string) (snapshots.Snapshotter, error)) (*snapshotStore, error) {
	sn, err := snapshotter(name)
	if err != nil {
		return nil, err
	}
	ss, ok := sn.(*snapshotStore)
	if !ok || ss.db != s.db {
		return nil, fmt.Errorf("snapshotter %q keeps its records elsewhere than the containers' store: %w", name, errdefs.ErrNotImplemented)
	}
	return ss, nil
}

// createContainerRecord writes the new container c (validated) in tx and
// returns it as stored.
func createContainerRecord(tx *bolt.Tx, ns string, c containers.Container) (containers.Container, error) {
	bkt, err := createKindBucket(tx, ns, bucketContainers)
	if err != nil {
		return containers.Container{}, err
	}
	cb, err := bkt.CreateBucket([]byte(c.ID))
	if err != nil {
		if errors.Is(err, bolterrors.ErrBucketExists) {
			return containers.Container{}, containerExists(ns, c.ID)
		}
		return containers.Container{}, err
	}
	c.CreatedAt = time.Now().UTC()
	c.UpdatedAt = c.CreatedAt
	if err := writeContainer(cb, c); err != nil {
		return containers.Container{}, fmt.Errorf("container %q in namespace %q: write: %w", c.ID, ns, err)
	}
	return readContainer(c.ID, cb)
}

func (s *containerStore) Update(ctx context.Context, c containers.Container, fieldpaths ...string) (containers.Container, error) {
	ns, err := namespaceAndID(ctx, c.ID)
	if err != nil {
		return containers.Container{}, err
	}
	if err := checkFieldpaths(c.ID, fieldpaths); err != nil {
		return containers.Container{}, err
	}
	var stored containers.Container
	err = s.db.update(ctx, func(tx *bolt.Tx) error {
		cb := containerBucket(tx, ns, c.ID)
		if cb == nil {
			return containerNotFound(ns, c.ID)
		}
		current, err := readContainer(c.ID, cb)
		if err != nil {
			return err
		}
		next, err := applyFieldpaths(current, c, fieldpaths)
		if err != nil {
			return err
		}
		if err := validateContainer(next); err != nil {
			return err
		}
		next.UpdatedAt = time.Now().UTC()
		if err := writeContainer(cb, next); err != nil {
			return fmt.Errorf("container %q in namespace %q: write: %w", c.ID, ns, err)
		}
		stored, err = readContainer(c.ID, cb)
		return err
	})
	return stored, err
}

func (s *containerStore) Delete(ctx context.Context, id string) error {
	return s.delete(ctx, id, nil)
}

// DeleteWithSnapshot deletes the container id and the namespace's record of
// its snapshot in one transaction, with Remove's checks on the snapshot;
// GC removes the snapshot underneath afterwards, as after Remove. A
// container without a snapshot, or whose snapshot record is gone, is
// deleted all the same.
func (s *containerStore) DeleteWithSnapshot(ctx context.Context, id string, usable func(snapshotter string) error) error {
	if usable == nil {
		return fmt.Errorf("container %q: delete with its snapshot needs to know the usable snapshotters: %w", id, errdefs.ErrInvalidArgument)
	}
	return s.delete(ctx, id, usable)
}

// delete deletes the container id and, unless usable is nil, the record of
// its snapshot, in one transaction.
func (s *containerStore) delete(ctx context.Context, id string, usable func(snapshotter string) error) error {
	ns, err := namespaceAndID(ctx, id)
	if err != nil {
		return err
	}
	removed := false
	err = s.db.update(ctx, func(tx *bolt.Tx) error {
		bkt := kindBucket(tx, ns, bucketContainers)
		if bkt == nil || bkt.Bucket([]byte(id)) == nil {
			return containerNotFound(ns, id)
		}
		cb := bkt.Bucket([]byte(id))
		if key := string(cb.Get(keySnapshotKey)); usable != nil && key != "" {
			var err error
			if removed, err = removeContainerSnapshot(ctx, tx, s.db, ns, string(cb.Get(keySnapshotter)), key, usable); err != nil {
				return fmt.Errorf("container %q: %w", id, err)
			}
			if err := s.db.failAt(failDeleteContainerRecord); err != nil {
				return err
			}
		}
		return bkt.DeleteBucket([]byte(id))
	})
	if err == nil && removed {
		s.db.dirtied()
	}
	return err
}

// removeContainerSnapshot removes the record of a container's snapshot key
// of snapshotter in tx, as Remove would, and says whether there was one.
// The snapshotter underneath is not needed: the record goes, GC removes
// the snapshot.
func removeContainerSnapshot(ctx context.Context, tx *bolt.Tx, db *DB, ns, snapshotter, key string, usable func(string) error) (bool, error) {
	if err := usable(snapshotter); err != nil {
		return false, fmt.Errorf("snapshot %q: %w", key, err)
	}
	ss := &snapshotStore{db: db, name: snapshotter}
	if _, err := ss.namespaceAndKey(ctx, key); err != nil {
		return false, err
	}
	err := ss.removeRecord(tx, ns, key)
	if errdefs.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// mutableFields are the fields an Update without field paths replaces.
var mutableFields = []string{"labels", "image", "spec", "extensions"}

// immutableFields may be named in field paths only to be refused with a
// clearer reason than "unknown".
var immutableFields = []string{"id", "runtime", "runtime.name", "runtime.options", "snapshotter", "snapshotkey", "createdat", "updatedat"}

// checkFieldpaths refuses unknown and immutable field paths before any
// transaction starts.
func checkFieldpaths(id string, fieldpaths []string) error {
	for _, p := range fieldpaths {
		if key, ok := strings.CutPrefix(p, "labels."); ok {
			if key == "" {
				return fmt.Errorf("container %q: field path %q names no label: %w", id, p, errdefs.ErrInvalidArgument)
			}
			continue
		}
		if key, ok := strings.CutPrefix(p, "extensions."); ok {
			if key == "" {
				return fmt.Errorf("container %q: field path %q names no extension: %w", id, p, errdefs.ErrInvalidArgument)
			}
			continue
		}
		switch {
		case slices.Contains(mutableFields, p):
		case slices.Contains(immutableFields, p):
			return fmt.Errorf("container %q: field %q is immutable: %w", id, p, errdefs.ErrInvalidArgument)
		default:
			return fmt.Errorf("container %q: unknown field path %q: %w", id, p, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// applyFieldpaths returns current with the fields that fieldpaths name taken
// from in. Without field paths it takes every mutable field, and refuses a
// change to an immutable one rather than drop it silently. current is the
// caller's own copy and may be changed.
func applyFieldpaths(current, in containers.Container, fieldpaths []string) (containers.Container, error) {
	next := current
	if len(fieldpaths) == 0 {
		switch {
		case in.Runtime.Name != current.Runtime.Name:
			return containers.Container{}, immutable(in.ID, "runtime.name")
		case !proto.Equal(in.Runtime.Options, current.Runtime.Options):
			return containers.Container{}, immutable(in.ID, "runtime.options")
		case in.Snapshotter != current.Snapshotter:
			return containers.Container{}, immutable(in.ID, "snapshotter")
		case in.SnapshotKey != current.SnapshotKey:
			return containers.Container{}, immutable(in.ID, "snapshotkey")
		}
		fieldpaths = mutableFields
	}
	for _, p := range fieldpaths {
		if key, ok := strings.CutPrefix(p, "labels."); ok {
			if next.Labels == nil {
				next.Labels = map[string]string{}
			}
			next.Labels[key] = in.Labels[key]
			continue
		}
		if key, ok := strings.CutPrefix(p, "extensions."); ok {
			if next.Extensions == nil {
				next.Extensions = map[string]*anypb.Any{}
			}
			next.Extensions[key] = in.Extensions[key]
			continue
		}
		switch p {
		case "labels":
			next.Labels = in.Labels
		case "image":
			next.Image = in.Image
		case "spec":
			next.Spec = in.Spec
		case "extensions":
			next.Extensions = in.Extensions
		}
	}
	return next, nil
}

func immutable(id, field string) error {
	return fmt.Errorf("container %q: field %q is immutable: %w", id, field, errdefs.ErrInvalidArgument)
}

// containerBucket returns v1/<ns>/containers/<id>, or nil.
func containerBucket(tx *bolt.Tx, ns, id string) *bolt.Bucket {
	bkt := kindBucket(tx, ns, bucketContainers)
	if bkt == nil {
		return nil
	}
	return bkt.Bucket([]byte(id))
}

func containerExists(ns, id string) error {
	return fmt.Errorf("container %q in namespace %q: %w", id, ns, errdefs.ErrAlreadyExists)
}

func containerNotFound(ns, id string) error {
	return fmt.Errorf("container %q in namespace %q: %w", id, ns, errdefs.ErrNotFound)
}

// namespaceAndID returns the namespace of ctx once it and id are valid.
func namespaceAndID(ctx context.Context, id string) (string, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return "", err
	}
	return ns, validateContainerID(id)
}

func validateContainerID(id string) error {
	if err := identifiers.Validate(id); err != nil {
		return fmt.Errorf("container id: %w", err)
	}
	return nil
}
