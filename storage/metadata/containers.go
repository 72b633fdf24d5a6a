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

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/identifiers"
	"github.com/berthrt/berth/namespaces"
)

// Container is the record of a container: what a task is created from. It
// holds no state of a running process.
type Container struct {
	// ID names the container in its namespace; immutable.
	ID string
	// Labels are free metadata; a label with an empty value is not stored.
	Labels map[string]string
	// Image is the reference of the image the container was made from, if
	// any.
	Image string
	// Runtime is the OCI runtime that runs the container's task; immutable.
	Runtime RuntimeInfo
	// Spec is the OCI runtime spec (config.json), JSON; required.
	Spec []byte
	// Snapshotter names the snapshotter of SnapshotKey; immutable.
	Snapshotter string
	// SnapshotKey is the snapshot that is the container's rootfs, if any;
	// immutable.
	SnapshotKey string
	// CreatedAt and UpdatedAt are set by the store, in UTC.
	CreatedAt, UpdatedAt time.Time
	// Extensions carry typed data of clients; a nil value is not stored.
	Extensions map[string]*anypb.Any
}

// RuntimeInfo names the runtime of a container and its options.
type RuntimeInfo struct {
	Name    string
	Options *anypb.Any
}

// ContainerStore keeps the containers of the namespace on each call's
// context (namespaces.NamespaceRequired). An id is unique within its
// namespace and invisible from any other.
type ContainerStore interface {
	// Get returns the container id; ErrNotFound if absent.
	Get(ctx context.Context, id string) (Container, error)
	// List returns the containers that match any of filters (all when
	// none is given), ordered by id. Fields: id, image, runtime.name,
	// snapshotter, snapshotkey, labels.<key>.
	List(ctx context.Context, filters ...string) ([]Container, error)
	// Create stores c, creating the namespace when it is absent, and
	// returns the record as stored (with CreatedAt and UpdatedAt);
	// ErrAlreadyExists if the id is taken.
	Create(ctx context.Context, c Container) (Container, error)
	// Update changes the fields of the container c.ID that fieldpaths
	// name (see doc.go), all mutable fields when none is named, and
	// returns the record as stored.
	Update(ctx context.Context, c Container, fieldpaths ...string) (Container, error)
	// Delete removes the container id; ErrNotFound if absent.
	Delete(ctx context.Context, id string) error
}

// Containers returns the container store of db.
func (db *DB) Containers() ContainerStore {
	return &containerStore{db: db}
}

type containerStore struct {
	db *DB
}

func (s *containerStore) Get(ctx context.Context, id string) (Container, error) {
	ns, err := namespaceAndID(ctx, id)
	if err != nil {
		return Container{}, err
	}
	var c Container
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

func (s *containerStore) List(ctx context.Context, fs ...string) ([]Container, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	filter, err := parseListFilters(ns, "containers", fs)
	if err != nil {
		return nil, err
	}
	var list []Container
	err = s.db.view(ctx, func(tx *bolt.Tx) error {
		bkt := kindBucket(tx, ns, bucketContainers)
		if bkt == nil {
			return nil
		}
		c := bkt.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if v != nil {
				continue
			}
			ctr, err := readContainer(string(k), bkt.Bucket(k))
			if err != nil {
				return err
			}
			if filter.Match(containerAdaptor(ctr)) {
				list = append(list, ctr)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return list, nil
}

func (s *containerStore) Create(ctx context.Context, c Container) (Container, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return Container{}, err
	}
	if err := validateContainer(c); err != nil {
		return Container{}, err
	}
	var stored Container
	err = s.db.update(ctx, func(tx *bolt.Tx) error {
		bkt, err := createKindBucket(tx, ns, bucketContainers)
		if err != nil {
			return err
		}
		cb, err := bkt.CreateBucket([]byte(c.ID))
		if err != nil {
			if errors.Is(err, bolterrors.ErrBucketExists) {
				return fmt.Errorf("container %q in namespace %q: %w", c.ID, ns, errdefs.ErrAlreadyExists)
			}
			return err
		}
		c.CreatedAt = time.Now().UTC()
		c.UpdatedAt = c.CreatedAt
		if err := writeContainer(cb, c); err != nil {
			return fmt.Errorf("container %q in namespace %q: write: %w", c.ID, ns, err)
		}
		stored, err = readContainer(c.ID, cb)
		return err
	})
	return stored, err
}

func (s *containerStore) Update(ctx context.Context, c Container, fieldpaths ...string) (Container, error) {
	ns, err := namespaceAndID(ctx, c.ID)
	if err != nil {
		return Container{}, err
	}
	if err := checkFieldpaths(c.ID, fieldpaths); err != nil {
		return Container{}, err
	}
	var stored Container
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
	ns, err := namespaceAndID(ctx, id)
	if err != nil {
		return err
	}
	return s.db.update(ctx, func(tx *bolt.Tx) error {
		bkt := kindBucket(tx, ns, bucketContainers)
		if bkt == nil || bkt.Bucket([]byte(id)) == nil {
			return containerNotFound(ns, id)
		}
		return bkt.DeleteBucket([]byte(id))
	})
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
func applyFieldpaths(current, in Container, fieldpaths []string) (Container, error) {
	next := current
	if len(fieldpaths) == 0 {
		switch {
		case in.Runtime.Name != current.Runtime.Name:
			return Container{}, immutable(in.ID, "runtime.name")
		case !proto.Equal(in.Runtime.Options, current.Runtime.Options):
			return Container{}, immutable(in.ID, "runtime.options")
		case in.Snapshotter != current.Snapshotter:
			return Container{}, immutable(in.ID, "snapshotter")
		case in.SnapshotKey != current.SnapshotKey:
			return Container{}, immutable(in.ID, "snapshotkey")
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
