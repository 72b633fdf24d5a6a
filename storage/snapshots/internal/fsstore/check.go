package fsstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/berthrt/berth/errdefs"
)

// CheckFolders compares, read-only, the folders under root/snapshots with
// the records of root/metadata.db: unknown are the folders that no record
// names (left by a crash; New removes them), missing the folders that a
// record names and that are gone. A root without metadata.db has neither.
func CheckFolders(root string) (unknown, missing []string, err error) {
	path := filepath.Join(root, "metadata.db")
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: openTimeout, ReadOnly: true})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, nil, fmt.Errorf("%s is locked by another process: %w", path, errdefs.ErrUnavailable)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	entries, err := os.ReadDir(filepath.Join(root, "snapshots"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, err
	}
	err = db.View(func(tx *bolt.Tx) error {
		v1 := tx.Bucket(bucketV1)
		if v1 == nil || v1.Bucket(bucketIDs) == nil {
			return nil
		}
		ids := v1.Bucket(bucketIDs)
		present := map[string]bool{}
		for _, e := range entries {
			present[e.Name()] = true
			if id, err := strconv.ParseUint(e.Name(), 10, 64); err == nil && ids.Get(idKey(id)) != nil {
				continue
			}
			unknown = append(unknown, filepath.Join(root, "snapshots", e.Name()))
		}
		return ids.ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				return nil
			}
			name := strconv.FormatUint(binary.BigEndian.Uint64(k), 10)
			if !present[name] {
				missing = append(missing, fmt.Sprintf("%s (snapshot %q)", filepath.Join(root, "snapshots", name), v))
			}
			return nil
		})
	})
	return unknown, missing, err
}
