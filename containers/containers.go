// Package containers is the vocabulary of container records: Container,
// what a task is created from, and Store, the role of whatever keeps them
// (the daemon's bbolt store, storage/metadata; the client over the
// containers API). It imports no store.
package containers

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/anypb"

	"github.com/berthrt/berth/mount"
	"github.com/berthrt/berth/snapshots"
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

// NewSnapshot is the snapshot that Store.CreateWithSnapshot makes for a
// container, under the container's SnapshotKey of its Snapshotter.
type NewSnapshot struct {
	// Parent is the committed snapshot to build on; "" for an empty tree.
	Parent string
	// View makes a read-only view instead of an active snapshot.
	View bool
	// Labels are the new snapshot's.
	Labels map[string]string
}

// Store keeps the containers of the namespace on each call's
// context (namespaces.NamespaceRequired). An id is unique within its
// namespace and invisible from any other.
type Store interface {
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
	// name (see storage/metadata's doc), all mutable fields when none is named, and
	// returns the record as stored.
	Update(ctx context.Context, c Container, fieldpaths ...string) (Container, error)
	// Delete removes the container id; ErrNotFound if absent.
	Delete(ctx context.Context, id string) error
	// DeleteWithSnapshot removes the container id and the record of its
	// snapshot (SnapshotKey of Snapshotter) at once: both or, on any
	// error, neither. It checks what a snapshot's Remove checks:
	// ErrFailedPrecondition while the snapshot is the parent of another;
	// usable(Snapshotter) says whether the snapshotter may be used, and
	// its error fails the delete. A container without a snapshot, or
	// whose snapshot is gone already, is deleted all the same.
	DeleteWithSnapshot(ctx context.Context, id string, usable func(snapshotter string) error) error
	// CreateWithSnapshot stores c and makes its snapshot (SnapshotKey of
	// Snapshotter, both required) as snap says, at once: both or, on any
	// error, neither. It returns the record as stored and the snapshot's
	// mounts. snapshotter returns the snapshotter of a name, as the
	// snapshots API serves it; its error fails the create. The errors are
	// those of Create and of the snapshot's Prepare (View): a taken key is
	// ErrAlreadyExists, and the snapshot that holds it stays as it was.
	CreateWithSnapshot(ctx context.Context, c Container, snap NewSnapshot, snapshotter func(name string) (snapshots.Snapshotter, error)) (Container, []mount.Mount, error)
}
