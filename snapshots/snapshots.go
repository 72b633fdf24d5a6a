package snapshots

import (
	"context"
	"time"

	"github.com/berthrt/berth/mount"
)

// Kind is the kind of a snapshot.
type Kind uint8

// The kinds of snapshots; the zero Kind is no kind.
const (
	KindUnknown Kind = iota
	// KindView is a read-only snapshot of a committed parent.
	KindView
	// KindActive is a writable snapshot, the only kind that commits.
	KindActive
	// KindCommitted is read-only and may be a parent.
	KindCommitted
)

// String returns the kind's name as filters and the API spell it: "view",
// "active", "committed".
func (k Kind) String() string {
	switch k {
	case KindView:
		return "view"
	case KindActive:
		return "active"
	case KindCommitted:
		return "committed"
	}
	return "unknown"
}

// ParseKind is the inverse of Kind.String; "unknown" for anything else.
func ParseKind(s string) Kind {
	switch s {
	case "view":
		return KindView
	case "active":
		return KindActive
	case "committed":
		return KindCommitted
	}
	return KindUnknown
}

// Info describes a snapshot.
type Info struct {
	Kind Kind
	// Name is the key of an active snapshot or a view, the name of a
	// committed one.
	Name string
	// Parent is the name of the committed parent, "" for none.
	Parent string
	// Labels are free metadata; an empty value means no label.
	Labels map[string]string
	// Created is when the snapshot was made (for a committed one: when it
	// was committed); Updated when its labels last changed. UTC.
	Created, Updated time.Time
}

// Usage is the space a snapshot takes of its own, its parents excluded.
type Usage struct {
	// Inodes is the number of inodes: files, folders, links.
	Inodes int64
	// Size is the number of bytes the snapshot's files take on disk.
	Size int64
}

// Add adds o to u.
func (u *Usage) Add(o Usage) {
	u.Inodes += o.Inodes
	u.Size += o.Size
}

// WalkFunc is called by Walk for each snapshot. An error stops the walk
// and is Walk's error.
type WalkFunc func(context.Context, Info) error

// Snapshotter stores snapshots; every method is safe for concurrent use.
//
// Every method that names a snapshot takes its key (or a committed
// snapshot's name). Stat, Update, Usage, Walk and Remove take every kind;
// Mounts takes active snapshots and views (a committed snapshot is
// mounted through a View of it).
type Snapshotter interface {
	// Stat describes the snapshot key; ErrNotFound if absent.
	Stat(ctx context.Context, key string) (Info, error)
	// Update changes the labels of info.Name that fieldpaths name
	// ("labels" for all, "labels.<key>" for one; none means all) and
	// returns the snapshot as updated. Any other field path is
	// ErrInvalidArgument.
	Update(ctx context.Context, info Info, fieldpaths ...string) (Info, error)
	// Usage returns the space the snapshot key takes of its own: walked
	// for an active snapshot, recorded at commit for a committed one.
	Usage(ctx context.Context, key string) (Usage, error)
	// Mounts returns how to mount the active snapshot or view key.
	Mounts(ctx context.Context, key string) ([]mount.Mount, error)
	// Prepare makes the active snapshot key on top of the committed
	// snapshot parent ("" for an empty filesystem) and returns its
	// mounts. ErrAlreadyExists when key exists; ErrNotFound when parent
	// is absent; ErrInvalidArgument when it is not committed.
	Prepare(ctx context.Context, key, parent string, opts ...Opt) ([]mount.Mount, error)
	// View is Prepare for a read-only view; a view cannot be committed.
	View(ctx context.Context, key, parent string, opts ...Opt) ([]mount.Mount, error)
	// Commit turns the active snapshot key into the committed snapshot
	// name, which keeps key's parent; key is gone afterwards. The caller
	// must have unmounted key. ErrAlreadyExists when name exists,
	// ErrFailedPrecondition when key is not active.
	Commit(ctx context.Context, name, key string, opts ...Opt) error
	// Remove removes the snapshot key, of any kind, and its files.
	// ErrFailedPrecondition while another snapshot has it for parent.
	Remove(ctx context.Context, key string) error
	// Walk calls fn for every snapshot matching any of filters (all when
	// none), in key order; fields: kind, name, parent, labels.<key>.
	Walk(ctx context.Context, fn WalkFunc, filters ...string) error
	// Close releases the snapshotter's files; it waits for calls under
	// way, and every call after it fails.
	Close() error
}

// Opt sets a field of the Info a snapshot is made or committed with.
type Opt func(*Info) error

// WithLabels adds labels to the snapshot.
func WithLabels(labels map[string]string) Opt {
	return func(info *Info) error {
		if info.Labels == nil {
			info.Labels = map[string]string{}
		}
		for k, v := range labels {
			info.Labels[k] = v
		}
		return nil
	}
}

// ApplyOpts returns the Info that opts make of an empty one, its labels
// validated.
func ApplyOpts(opts []Opt) (Info, error) {
	var info Info
	for _, opt := range opts {
		if err := opt(&info); err != nil {
			return Info{}, err
		}
	}
	if err := ValidateLabels(info.Labels); err != nil {
		return Info{}, err
	}
	info.Labels = cleanLabels(info.Labels)
	return info, nil
}

// LabelSnapshotRef on Prepare or View, in a namespaced snapshotter
// (storage/metadata), names the committed snapshot the
// caller is about to make (an unpacker: the layer's chain ID). When the
// namespace has it already, the call is ErrAlreadyExists, makes nothing,
// and puts that snapshot under the context's lease; the caller skips the
// layer. As containerd.io/snapshot.ref.
const LabelSnapshotRef = "berth.io/snapshot.ref"
