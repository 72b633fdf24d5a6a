package content

import (
	"context"
	"errors"
	"fmt"
	"io"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/errdefs"
)

// WriteBlob writes the blob desc, read from r, through ing under ref, and
// commits it with desc's size and digest and opts. A blob that exists
// already is success. An ingest that ref left behind is resumed: r is
// advanced past the bytes written already (by Seek when it is an
// io.Seeker), and Commit verifies the whole.
func WriteBlob(ctx context.Context, ing Ingester, ref string, r io.Reader, desc ocispec.Descriptor, opts ...Opt) (err error) {
	w, err := ing.Writer(ctx, WithRef(ref), WithDescriptor(desc))
	if err != nil {
		if errdefs.IsAlreadyExists(err) {
			return nil
		}
		return err
	}
	defer func() { err = errors.Join(err, w.Close()) }()
	st, err := w.Status()
	if err != nil {
		return err
	}
	if st.Offset > 0 {
		if err := skip(r, st.Offset); err != nil {
			return fmt.Errorf("ingest %q: resume at %d: %w", ref, st.Offset, err)
		}
	}
	if _, err := io.CopyBuffer(w, r, make([]byte, ChunkSize)); err != nil {
		return err
	}
	if err := w.Commit(ctx, desc.Size, desc.Digest, opts...); err != nil && !errdefs.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// skip advances r by n bytes.
func skip(r io.Reader, n int64) error {
	if s, ok := r.(io.Seeker); ok {
		_, err := s.Seek(n, io.SeekCurrent)
		return err
	}
	copied, err := io.CopyN(io.Discard, r, n)
	if err == io.EOF {
		return fmt.Errorf("the source ended after %d bytes: %w", copied, io.ErrUnexpectedEOF)
	}
	return err
}

// MaxReadBlobSize bounds what ReadBlob reads into memory: manifests,
// indexes and configs are far smaller.
const MaxReadBlobSize = 4 << 20

// ReadBlob reads the whole blob desc into memory; for small blobs such as
// manifests, indexes and configs. The allocation is desc.Size, which must
// be at most MaxReadBlobSize (else ErrInvalidArgument), never the stored
// blob's size: a descriptor that names a stored blob of another size (a
// manifest that names a large layer as its config with a small size) is
// ErrFailedPrecondition naming both sizes, before anything is read (from
// a BlobReader, which reads it in one request: after at most desc.Size+1
// bytes, and then its digest is verified too).
func ReadBlob(ctx context.Context, p Provider, desc ocispec.Descriptor) (_ []byte, err error) {
	if desc.Size < 0 || desc.Size > MaxReadBlobSize {
		return nil, fmt.Errorf("content %s: a descriptor of %d bytes, not 0 to %d read into memory: %w", desc.Digest, desc.Size, MaxReadBlobSize, errdefs.ErrInvalidArgument)
	}
	if br, ok := p.(BlobReader); ok {
		return br.ReadBlob(ctx, desc)
	}
	ra, err := p.ReaderAt(ctx, desc)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, ra.Close()) }()
	if ra.Size() != desc.Size {
		return nil, fmt.Errorf("content %s: the stored blob is %d bytes, the descriptor says %d: %w", desc.Digest, ra.Size(), desc.Size, errdefs.ErrFailedPrecondition)
	}
	buf := make([]byte, desc.Size)
	if _, err := io.ReadFull(io.NewSectionReader(ra, 0, desc.Size), buf); err != nil {
		return nil, fmt.Errorf("content %s: %w", desc.Digest, err)
	}
	return buf, nil
}

// BlobReader is a Provider that reads a whole small blob in one request,
// where ReaderAt and a read would take two (a remote store: ReaderAt asks
// for the blob's size first). ReadBlob uses it when a Provider has it,
// after checking desc.Size against MaxReadBlobSize.
type BlobReader interface {
	// ReadBlob returns the blob desc: exactly desc.Size bytes with
	// digest desc.Digest, verified. A missing blob is ErrNotFound naming
	// the digest; a stored blob of another size, or other bytes, is
	// ErrFailedPrecondition, and never more than desc.Size+1 bytes are
	// read to find that out.
	ReadBlob(ctx context.Context, desc ocispec.Descriptor) ([]byte, error)
}

// NewReader reads the blob ra from its start.
func NewReader(ra ReaderAt) io.Reader {
	return io.NewSectionReader(ra, 0, ra.Size())
}
