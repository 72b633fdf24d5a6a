package local

import (
	"context"
	_ "crypto/sha256" // the algorithms go-digest computes: sha256,
	_ "crypto/sha512" // and sha384 and sha512, which OCI allows
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/writeback"
)

func (s *store) Writer(ctx context.Context, opts ...content.WriterOpt) (content.Writer, error) {
	var wo content.WriterOpts
	for _, opt := range opts {
		if err := opt(&wo); err != nil {
			return nil, err
		}
	}
	if err := content.ValidateRef(wo.Ref); err != nil {
		return nil, err
	}
	if err := validateDescriptor(wo.Desc); err != nil {
		return nil, fmt.Errorf("ingest %q: %w", wo.Ref, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.lock(wo.Ref); err != nil {
		return nil, err
	}
	w, err := s.openWriter(wo.Ref, wo.Desc.Size, wo.Desc.Digest)
	if err != nil {
		s.unlock(wo.Ref)
		return nil, err
	}
	return w, nil
}

// openWriter opens the ingest ref, creating it when absent; the caller
// holds the ref's lock.
func (s *store) openWriter(ref string, total int64, expected digest.Digest) (*writer, error) {
	dir := s.ingestDir(ref)
	m, err := readMeta(dir, ref)
	switch {
	case errdefs.IsNotFound(err):
		m = ingestMeta{Ref: ref, Total: total, Expected: expected, StartedAt: time.Now().UTC()}
		if err := createIngest(s.ingestRoot(), dir, m); err != nil {
			return nil, ingestError(ref, err)
		}
	case err != nil:
		return nil, err
	default:
		if err := m.resume(total, expected); err != nil {
			return nil, err
		}
		if err := writeMetaAtomic(dir, m); err != nil {
			return nil, ingestError(ref, err)
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, "data"), os.O_RDWR|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, ingestError(ref, err)
	}
	w := &writer{s: s, ref: ref, dir: dir, f: f, meta: m, algorithm: digest.Canonical}
	if m.Expected != "" {
		w.algorithm = m.Expected.Algorithm()
	}
	if err := w.rehash(); err != nil {
		return nil, errors.Join(ingestError(ref, err), f.Close())
	}
	return w, nil
}

// resume checks the size and digest a resuming Writer gives against those
// the ingest was started with, and adds those it lacked.
func (m *ingestMeta) resume(total int64, expected digest.Digest) error {
	if total > 0 {
		if m.Total > 0 && m.Total != total {
			return fmt.Errorf("ingest %q: started for %d bytes, not %d; abort it to start afresh: %w", m.Ref, m.Total, total, errdefs.ErrFailedPrecondition)
		}
		m.Total = total
	}
	if expected != "" {
		if m.Expected != "" && m.Expected != expected {
			return fmt.Errorf("ingest %q: started for %s, not %s; abort it to start afresh: %w", m.Ref, m.Expected, expected, errdefs.ErrFailedPrecondition)
		}
		m.Expected = expected
	}
	return nil
}

// writer is a Writer of the local store. It is not safe for concurrent
// use, as an io.Writer need not be; the ref's lock keeps other writers of
// the same ingest away.
type writer struct {
	s         *store
	ref       string
	dir       string
	f         *os.File // the ingest's data; nil once closed
	meta      ingestMeta
	algorithm digest.Algorithm
	digester  digest.Digester // of the bytes [0, offset)
	offset    int64
	updatedAt time.Time
	wb        writeback.Ahead // the data goes to disk while it arrives, so Commit's fsync is short
}

// rehash reads the data from the start: the digester and offset then
// describe exactly what is on disk.
func (w *writer) rehash() error {
	if _, err := w.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	w.digester = w.algorithm.Digester()
	n, err := io.Copy(w.digester.Hash(), w.f)
	if err != nil {
		return err
	}
	w.offset = n
	fi, err := w.f.Stat()
	if err != nil {
		return err
	}
	w.updatedAt = fi.ModTime().UTC()
	return nil
}

func (w *writer) Write(p []byte) (int, error) {
	if w.f == nil {
		return 0, w.closedError()
	}
	if w.meta.Total > 0 && w.offset+int64(len(p)) > w.meta.Total {
		return 0, fmt.Errorf("ingest %q: %d more bytes at offset %d would exceed the expected size %d: %w",
			w.ref, len(p), w.offset, w.meta.Total, errdefs.ErrInvalidArgument)
	}
	n, err := w.f.Write(p)
	w.digester.Hash().Write(p[:n])
	w.offset += int64(n)
	w.wb.Wrote(int(w.f.Fd()), w.offset)
	w.updatedAt = time.Now().UTC()
	if err != nil {
		return n, ingestError(w.ref, err)
	}
	return n, nil
}

// Reread is content.Rereader's: the ingest's data file, which an
// *os.File lets be read (pread) beside Write and fails to read once
// closed.
func (w *writer) Reread() io.ReaderAt {
	if w.f == nil {
		return nil
	}
	return w.f
}

func (w *writer) Digest() digest.Digest { return w.digester.Digest() }

func (w *writer) Status() (content.Status, error) {
	if w.f == nil {
		return content.Status{}, w.closedError()
	}
	return content.Status{
		Ref: w.ref, Offset: w.offset, Total: w.meta.Total, Expected: w.meta.Expected,
		StartedAt: w.meta.StartedAt, UpdatedAt: w.updatedAt,
	}, nil
}

func (w *writer) Truncate(size int64) error {
	if w.f == nil {
		return w.closedError()
	}
	if size < 0 || size > w.offset {
		return fmt.Errorf("ingest %q: truncate to %d: must be between 0 and the offset %d: %w", w.ref, size, w.offset, errdefs.ErrInvalidArgument)
	}
	if err := w.f.Truncate(size); err != nil {
		return ingestError(w.ref, err)
	}
	if err := w.rehash(); err != nil {
		return ingestError(w.ref, err)
	}
	return nil
}

func (w *writer) Commit(ctx context.Context, size int64, expected digest.Digest, opts ...content.Opt) error {
	if w.f == nil {
		return w.closedError()
	}
	var info content.Info
	for _, opt := range opts {
		if err := opt(&info); err != nil {
			return err
		}
	}
	if err := content.ValidateLabels(info.Labels); err != nil {
		return fmt.Errorf("ingest %q: %w", w.ref, err)
	}
	size, expected, err := w.wanted(size, expected)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	switch {
	case size > 0 && w.offset < size:
		return fmt.Errorf("ingest %q: %d of %d bytes written; write the rest and commit again: %w", w.ref, w.offset, size, errdefs.ErrFailedPrecondition)
	case size > 0 && w.offset > size:
		return w.discard(fmt.Errorf("ingest %q: %d bytes written, more than the expected %d; the ingest is removed: %w", w.ref, w.offset, size, errdefs.ErrFailedPrecondition))
	}
	if err := w.f.Sync(); err != nil {
		return ingestError(w.ref, err)
	}
	dgst := w.digester.Digest()
	if expected != "" && expected.Algorithm() != w.algorithm {
		if dgst, err = w.digestAs(expected.Algorithm()); err != nil {
			return ingestError(w.ref, err)
		}
	}
	if expected != "" && dgst != expected {
		return w.discard(fmt.Errorf("ingest %q: the bytes written have digest %s, not the expected %s; the ingest is removed: %w", w.ref, dgst, expected, errdefs.ErrFailedPrecondition))
	}
	return w.link(dgst, info.Labels)
}

// wanted merges the size and digest given to Commit with those the ingest
// was started with; a conflict is ErrInvalidArgument.
func (w *writer) wanted(size int64, expected digest.Digest) (int64, digest.Digest, error) {
	if size < 0 {
		return 0, "", fmt.Errorf("ingest %q: commit with negative size %d: %w", w.ref, size, errdefs.ErrInvalidArgument)
	}
	if expected != "" {
		if err := content.ValidateDigest(expected); err != nil {
			return 0, "", fmt.Errorf("ingest %q: commit: %w", w.ref, err)
		}
	}
	if w.meta.Total > 0 {
		if size > 0 && size != w.meta.Total {
			return 0, "", fmt.Errorf("ingest %q: commit with size %d, but the ingest was started for %d: %w", w.ref, size, w.meta.Total, errdefs.ErrInvalidArgument)
		}
		size = w.meta.Total
	}
	if w.meta.Expected != "" {
		if expected != "" && expected != w.meta.Expected {
			return 0, "", fmt.Errorf("ingest %q: commit as %s, but the ingest was started for %s: %w", w.ref, expected, w.meta.Expected, errdefs.ErrInvalidArgument)
		}
		expected = w.meta.Expected
	}
	return size, expected, nil
}

// digestAs hashes the data again with another algorithm.
func (w *writer) digestAs(alg digest.Algorithm) (digest.Digest, error) {
	if _, err := w.f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	dgst, err := alg.FromReader(w.f)
	if err != nil {
		return "", err
	}
	_, err = w.f.Seek(0, io.SeekEnd)
	return dgst, err
}

// link makes the verified data the blob dgst: read-only, hard-linked
// under blobs/ (which fails if the blob exists, so no blob is ever written
// twice), the folder fsynced, and then the ingest removed.
func (w *writer) link(dgst digest.Digest, labels map[string]string) error {
	data := filepath.Join(w.dir, "data")
	if err := os.Chmod(data, blobMode); err != nil {
		return ingestError(w.ref, err)
	}
	target := w.s.blobPath(dgst)
	if err := os.MkdirAll(filepath.Dir(target), dirMode); err != nil {
		return ingestError(w.ref, err)
	}
	if err := os.Link(data, target); err != nil {
		if errors.Is(err, os.ErrExist) {
			return w.discard(fmt.Errorf("content %s: %w", dgst, errdefs.ErrAlreadyExists))
		}
		return ingestError(w.ref, err)
	}
	if err := syncDir(filepath.Dir(target)); err != nil {
		return ingestError(w.ref, err)
	}
	if len(labels) > 0 {
		w.s.setLabels(dgst, cloneLabels(labels))
	}
	// The blob is committed: failing to remove the ingest now leaves a
	// stale ingest behind, not a wrong blob.
	return w.discard(nil)
}

// discard removes the ingest and closes the Writer; it returns cause,
// joined with what went wrong on the way.
func (w *writer) discard(cause error) error {
	err := errors.Join(w.f.Close(), os.RemoveAll(w.dir))
	w.f = nil
	w.s.unlock(w.ref)
	if err != nil {
		err = ingestError(w.ref, err)
	}
	return errors.Join(cause, err)
}

func (w *writer) Close() error {
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	w.s.unlock(w.ref)
	if err != nil {
		return ingestError(w.ref, err)
	}
	return nil
}

func (w *writer) closedError() error {
	return fmt.Errorf("ingest %q: writer closed: %w", w.ref, errdefs.ErrFailedPrecondition)
}

// validateDescriptor checks the size and digest a Writer is opened with;
// both are optional.
func validateDescriptor(desc ocispec.Descriptor) error {
	if desc.Size < 0 {
		return fmt.Errorf("descriptor %s: negative size %d: %w", desc.Digest, desc.Size, errdefs.ErrInvalidArgument)
	}
	if desc.Digest != "" {
		return content.ValidateDigest(desc.Digest)
	}
	return nil
}
