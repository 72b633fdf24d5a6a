package local

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/errdefs"
)

// maxMetaSize bounds the meta file of an ingest: a ref, a digest, a size
// and a time take far less.
const maxMetaSize = 8 << 10

// ingestMeta is the meta file of an ingest: what it was started with.
type ingestMeta struct {
	Ref       string        `json:"ref"`
	Total     int64         `json:"total,omitempty"`
	Expected  digest.Digest `json:"expected,omitempty"`
	StartedAt time.Time     `json:"startedat"`
}

// parseMeta decodes and checks the meta file of an ingest. A file that
// does not decode, or names a bad ref, size or digest, is ErrInternal:
// the store wrote it, so it was damaged since.
func parseMeta(raw []byte) (ingestMeta, error) {
	var m ingestMeta
	if len(raw) > maxMetaSize {
		return m, fmt.Errorf("ingest meta: %d bytes, more than %d: %w", len(raw), maxMetaSize, errdefs.ErrInternal)
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return m, fmt.Errorf("ingest meta: %v: %w", err, errdefs.ErrInternal)
	}
	if err := content.ValidateRef(m.Ref); err != nil {
		return m, fmt.Errorf("ingest meta: %v: %w", err, errdefs.ErrInternal)
	}
	if m.Total < 0 {
		return m, fmt.Errorf("ingest meta: negative total %d: %w", m.Total, errdefs.ErrInternal)
	}
	if m.Expected != "" && m.Expected.Validate() != nil {
		return m, fmt.Errorf("ingest meta: bad expected digest %.80q: %w", m.Expected, errdefs.ErrInternal)
	}
	return m, nil
}

// readMeta reads the meta file of the ingest in dir. want, when not
// empty, is the ref the caller expects there.
func readMeta(dir, want string) (ingestMeta, error) {
	name := want
	if name == "" {
		name = filepath.Base(dir)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "meta"))
	if err != nil {
		return ingestMeta{}, ingestError(name, err)
	}
	m, err := parseMeta(raw)
	if err != nil {
		return m, fmt.Errorf("ingest %q: %w", name, err)
	}
	if want != "" && m.Ref != want {
		return m, fmt.Errorf("ingest %q: its folder holds ingest %q: %w", want, m.Ref, errdefs.ErrInternal)
	}
	return m, nil
}

// readStatus describes the ingest in dir.
func readStatus(dir, want string) (content.Status, error) {
	m, err := readMeta(dir, want)
	if err != nil {
		return content.Status{}, err
	}
	st := content.Status{Ref: m.Ref, Total: m.Total, Expected: m.Expected, StartedAt: m.StartedAt, UpdatedAt: m.StartedAt}
	fi, err := os.Stat(filepath.Join(dir, "data"))
	if err != nil {
		return content.Status{}, ingestError(m.Ref, err)
	}
	st.Offset = fi.Size()
	if fi.ModTime().After(st.UpdatedAt) {
		st.UpdatedAt = fi.ModTime().UTC()
	}
	return st, nil
}

// writeMetaAtomic writes the meta file of dir: a temporary file, fsynced,
// renamed over the old one.
func writeMetaAtomic(dir string, m ingestMeta) error {
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, tmpPrefix+"meta")
	if err := writeFileSync(tmp, raw); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "meta")); err != nil {
		return err
	}
	return syncDir(dir)
}

// createIngest makes the folder of a new ingest complete under a
// temporary name and renames it into place, so that dir exists only with
// its meta and (empty) data.
func createIngest(ingestRoot, dir string, m ingestMeta) (err error) {
	tmp, err := os.MkdirTemp(ingestRoot, tmpPrefix)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, os.RemoveAll(tmp))
		}
	}()
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := writeFileSync(filepath.Join(tmp, "meta"), raw); err != nil {
		return err
	}
	if err := writeFileSync(filepath.Join(tmp, "data"), nil); err != nil {
		return err
	}
	if err := os.Chmod(tmp, dirMode); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	return syncDir(ingestRoot)
}

// writeFileSync creates name with data and fsyncs it. It does not follow
// a symlink at name.
func writeFileSync(name string, data []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, dataMode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return errors.Join(err, f.Close())
	}
	if err := f.Sync(); err != nil {
		return errors.Join(err, f.Close())
	}
	return f.Close()
}

// syncDir fsyncs a folder, so that the names made or removed in it
// survive a power failure.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		return errors.Join(err, d.Close())
	}
	return d.Close()
}
