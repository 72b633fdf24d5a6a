package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/errdefs"
)

// Modes of what the store creates. The root is private: private images'
// layers may hold secrets. Blobs are read-only, so nothing rewrites one in
// place by accident.
const (
	rootMode = 0o700
	dirMode  = 0o755
	dataMode = 0o600
	blobMode = 0o444
)

const tmpPrefix = ".tmp-"

// store is the local store on a folder; see the package documentation for
// its layout.
type store struct {
	root string

	mu      sync.Mutex               // guards writers and labels
	writers map[string]struct{}      // refs with an open Writer (or an Abort under way)
	labels  map[digest.Digest]labels // in memory only; see the package documentation
}

// labels are the labels of one blob and when they last changed.
type labels struct {
	labels    map[string]string
	updatedAt time.Time
}

// NewStore opens the local store at root, creating its folders when absent
// and removing the temporary folders a crash left behind.
func NewStore(root string) (content.Store, error) {
	for _, dir := range []string{root, filepath.Join(root, "blobs"), filepath.Join(root, "ingest")} {
		mode := os.FileMode(dirMode)
		if dir == root {
			mode = rootMode
		}
		if err := os.MkdirAll(dir, mode); err != nil {
			return nil, fmt.Errorf("content store %s: %w", root, err)
		}
	}
	s := &store{root: root, writers: map[string]struct{}{}, labels: map[digest.Digest]labels{}}
	entries, err := os.ReadDir(s.ingestRoot())
	if err != nil {
		return nil, fmt.Errorf("content store %s: %w", root, err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			if err := os.RemoveAll(filepath.Join(s.ingestRoot(), e.Name())); err != nil {
				return nil, fmt.Errorf("content store %s: remove a partial ingest: %w", root, err)
			}
		}
	}
	return s, nil
}

func (s *store) ingestRoot() string { return filepath.Join(s.root, "ingest") }

// blobPath is where the blob dgst lives; dgst must be valid.
func (s *store) blobPath(dgst digest.Digest) string {
	return filepath.Join(s.root, "blobs", dgst.Algorithm().String(), dgst.Encoded())
}

// ingestDir is the folder of the ingest ref: a hash, whatever the ref.
func (s *store) ingestDir(ref string) string {
	return filepath.Join(s.ingestRoot(), digest.FromString(ref).Encoded())
}

func (s *store) Info(ctx context.Context, dgst digest.Digest) (content.Info, error) {
	if err := content.ValidateDigest(dgst); err != nil {
		return content.Info{}, err
	}
	fi, err := os.Stat(s.blobPath(dgst))
	if err != nil {
		return content.Info{}, blobError(dgst, err)
	}
	return s.info(dgst, fi), nil
}

func (s *store) info(dgst digest.Digest, fi fs.FileInfo) content.Info {
	info := content.Info{Digest: dgst, Size: fi.Size(), CreatedAt: fi.ModTime().UTC(), UpdatedAt: fi.ModTime().UTC()}
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.labels[dgst]; ok {
		info.Labels = cloneLabels(l.labels)
		info.UpdatedAt = l.updatedAt
	}
	return info
}

func (s *store) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	if err := content.ValidateDigest(desc.Digest); err != nil {
		return nil, err
	}
	f, err := os.Open(s.blobPath(desc.Digest))
	if err != nil {
		return nil, blobError(desc.Digest, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, errors.Join(blobError(desc.Digest, err), f.Close())
	}
	return &fileReader{File: f, size: fi.Size()}, nil
}

// fileReader is a ReaderAt over an open blob.
type fileReader struct {
	*os.File
	size int64
}

func (r *fileReader) Size() int64 { return r.size }

func (s *store) Update(ctx context.Context, info content.Info, fieldpaths ...string) (content.Info, error) {
	current, err := s.Info(ctx, info.Digest)
	if err != nil {
		return content.Info{}, err
	}
	next, err := content.UpdateLabels(current.Labels, info, fieldpaths)
	if err != nil {
		return content.Info{}, err
	}
	s.setLabels(info.Digest, next)
	return s.Info(ctx, info.Digest)
}

func (s *store) setLabels(dgst digest.Digest, l map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.labels[dgst] = labels{labels: l, updatedAt: time.Now().UTC()}
}

func (s *store) Walk(ctx context.Context, fn content.WalkFunc, fss ...string) error {
	filter, err := content.ParseFilters(fss)
	if err != nil {
		return fmt.Errorf("walk content: %w", err)
	}
	algs, err := os.ReadDir(filepath.Join(s.root, "blobs"))
	if err != nil {
		return err
	}
	for _, alg := range algs {
		files, err := os.ReadDir(filepath.Join(s.root, "blobs", alg.Name()))
		if err != nil {
			return err
		}
		for _, f := range files {
			if err := ctx.Err(); err != nil {
				return err
			}
			dgst := digest.NewDigestFromEncoded(digest.Algorithm(alg.Name()), f.Name())
			if dgst.Validate() != nil {
				continue // not a blob: nothing the store wrote
			}
			fi, err := f.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted while walking
			} else if err != nil {
				return err
			}
			info := s.info(dgst, fi)
			if !filter.Match(content.InfoAdaptor(info)) {
				continue
			}
			if err := fn(info); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *store) Delete(ctx context.Context, dgst digest.Digest) error {
	if err := content.ValidateDigest(dgst); err != nil {
		return err
	}
	if err := os.Remove(s.blobPath(dgst)); err != nil {
		return blobError(dgst, err)
	}
	s.mu.Lock()
	delete(s.labels, dgst)
	s.mu.Unlock()
	return nil
}

func (s *store) Status(ctx context.Context, ref string) (content.Status, error) {
	if err := content.ValidateRef(ref); err != nil {
		return content.Status{}, err
	}
	return readStatus(s.ingestDir(ref), ref)
}

func (s *store) ListStatuses(ctx context.Context, fss ...string) ([]content.Status, error) {
	filter, err := content.ParseFilters(fss)
	if err != nil {
		return nil, fmt.Errorf("list ingests: %w", err)
	}
	entries, err := os.ReadDir(s.ingestRoot())
	if err != nil {
		return nil, err
	}
	var list []content.Status
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			continue
		}
		st, err := readStatus(filepath.Join(s.ingestRoot(), e.Name()), "")
		if errdefs.IsNotFound(err) {
			continue // committed or aborted meanwhile
		} else if err != nil {
			return nil, err
		}
		if filter.Match(content.StatusAdaptor(st)) {
			list = append(list, st)
		}
	}
	slices.SortFunc(list, func(a, b content.Status) int { return strings.Compare(a.Ref, b.Ref) })
	return list, nil
}

func (s *store) Abort(ctx context.Context, ref string) error {
	if err := content.ValidateRef(ref); err != nil {
		return err
	}
	if err := s.lock(ref); err != nil {
		return err
	}
	defer s.unlock(ref)
	dir := s.ingestDir(ref)
	if _, err := os.Stat(dir); err != nil {
		return ingestError(ref, err)
	}
	return os.RemoveAll(dir)
}

// lock takes ref for one Writer (or an Abort); ErrUnavailable when taken.
func (s *store) lock(ref string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.writers[ref]; ok {
		return fmt.Errorf("ingest %q: another writer has it open: %w", ref, errdefs.ErrUnavailable)
	}
	s.writers[ref] = struct{}{}
	return nil
}

func (s *store) unlock(ref string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.writers, ref)
}

// blobError classifies an error of the file system about blob dgst.
func blobError(dgst digest.Digest, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("content %s: %w", dgst, errdefs.ErrNotFound)
	}
	return fmt.Errorf("content %s: %w", dgst, err)
}

// ingestError classifies an error of the file system about ingest ref.
func ingestError(ref string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("ingest %q: %w", ref, errdefs.ErrNotFound)
	}
	return fmt.Errorf("ingest %q: %w", ref, err)
}

// cloneLabels copies l without the labels with an empty value; nil when
// none is left.
func cloneLabels(l map[string]string) map[string]string {
	out := maps.Clone(l)
	maps.DeleteFunc(out, func(_, v string) bool { return v == "" })
	if len(out) == 0 {
		return nil
	}
	return out
}
