package content

import (
	"context"
	"io"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Info describes a committed blob.
type Info struct {
	Digest digest.Digest
	Size   int64
	// CreatedAt is when the blob was committed (in a namespace: when the
	// namespace's record was made); UpdatedAt when its labels last
	// changed.
	CreatedAt, UpdatedAt time.Time
	// Labels are free metadata; an empty value means no label.
	Labels map[string]string
}

// Status describes an ingest under way.
type Status struct {
	// Ref is the name the ingest was started under.
	Ref string
	// Offset is the number of bytes written so far.
	Offset int64
	// Total is the expected size, 0 when unknown.
	Total int64
	// Expected is the expected digest, empty when unknown.
	Expected digest.Digest
	// StartedAt is when the ingest began; UpdatedAt when it last received
	// bytes.
	StartedAt, UpdatedAt time.Time
}

// ReaderAt reads one committed blob. Close it when done.
type ReaderAt interface {
	io.ReaderAt
	io.Closer
	// Size is the size of the blob.
	Size() int64
}

// Provider reads committed blobs.
type Provider interface {
	// ReaderAt opens the blob desc.Digest; ErrNotFound if absent.
	ReaderAt(ctx context.Context, desc ocispec.Descriptor) (ReaderAt, error)
}

// Ingester starts and resumes ingests.
type Ingester interface {
	// Writer opens the ingest named by WithRef (required), resuming it
	// when it exists. WithDescriptor gives the expected size and digest,
	// which Commit then also checks. ErrUnavailable while another Writer
	// for the ref is open; a store may answer ErrAlreadyExists when the
	// expected digest is committed already.
	Writer(ctx context.Context, opts ...WriterOpt) (Writer, error)
}

// Writer writes one ingest. Write appends; Commit verifies and makes the
// blob; Close releases the ref and leaves the ingest for a later Writer to
// resume (it is a no-op after a successful Commit).
type Writer interface {
	io.WriteCloser
	// Digest is the digest of the bytes written so far.
	Digest() digest.Digest
	// Commit checks that the bytes written are size bytes (when size >
	// 0) with digest expected (when not empty), and the size and digest
	// of the Writer's descriptor, then commits them. See the package
	// documentation for what a failed check does to the ingest.
	Commit(ctx context.Context, size int64, expected digest.Digest, opts ...Opt) error
	// Status describes the ingest.
	Status() (Status, error)
	// Truncate cuts the ingest to size bytes, which must not exceed the
	// offset; Truncate(0) starts it again.
	Truncate(size int64) error
}

// Rereader is implemented by a Writer whose bytes can be read back while
// it is still open, as an unpack that applies a layer while the layer is
// being fetched does. Reread returns a reader of the ingest as written:
// ReadAt may run beside Write, is valid within [0, Status().Offset), and
// fails once the Writer is closed or committed. A Writer that cannot
// offer one returns nil.
type Rereader interface {
	Reread() io.ReaderAt
}

// Manager manages committed blobs.
type Manager interface {
	// Info describes the blob dgst; ErrNotFound if absent.
	Info(ctx context.Context, dgst digest.Digest) (Info, error)
	// Update changes the labels of info.Digest that fieldpaths name
	// ("labels" for all of them, "labels.<key>" for one; no field path
	// means all), and returns the blob as updated.
	Update(ctx context.Context, info Info, fieldpaths ...string) (Info, error)
	// Walk calls fn for every blob matching any of filters (all when
	// none): fields digest, size, labels.<key>. An error from fn stops
	// the walk and is returned.
	Walk(ctx context.Context, fn WalkFunc, filters ...string) error
	// Delete removes the blob dgst; ErrNotFound if absent.
	Delete(ctx context.Context, dgst digest.Digest) error
}

// WalkFunc is called by Walk for each blob.
type WalkFunc func(Info) error

// IngestManager manages the ingests under way.
type IngestManager interface {
	// Status describes the ingest ref; ErrNotFound if absent.
	Status(ctx context.Context, ref string) (Status, error)
	// ListStatuses describes every ingest matching any of filters (all
	// when none): fields ref, expected.
	ListStatuses(ctx context.Context, filters ...string) ([]Status, error)
	// Abort removes the ingest ref; ErrNotFound if absent,
	// ErrUnavailable while a Writer for it is open.
	Abort(ctx context.Context, ref string) error
}

// Store is the whole content store.
type Store interface {
	Manager
	Provider
	IngestManager
	Ingester
}

// WriterOpts are what a Writer is opened with.
type WriterOpts struct {
	Ref  string
	Desc ocispec.Descriptor
}

// WriterOpt sets a WriterOpts field.
type WriterOpt func(*WriterOpts) error

// WithRef names the ingest.
func WithRef(ref string) WriterOpt {
	return func(o *WriterOpts) error {
		o.Ref = ref
		return nil
	}
}

// WithDescriptor gives the expected size (desc.Size, when positive) and
// digest (desc.Digest, when set) of the blob.
func WithDescriptor(desc ocispec.Descriptor) WriterOpt {
	return func(o *WriterOpts) error {
		o.Desc = desc
		return nil
	}
}

// Opt sets a field of the Info a blob is committed with.
type Opt func(*Info) error

// WithLabels sets the labels of the committed blob.
func WithLabels(labels map[string]string) Opt {
	return func(info *Info) error {
		info.Labels = labels
		return nil
	}
}
