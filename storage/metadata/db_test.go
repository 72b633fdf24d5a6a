package metadata

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/berthrt/berth/errdefs"
)

func TestOpenCreatesFileAndFolder(t *testing.T) {
	_, path := newTestDB(t)
	fi, err := os.Stat(path)
	requireNoErr(t, err)
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("file mode = %v, want 0600", perm)
	}
	di, err := os.Stat(filepath.Dir(path))
	requireNoErr(t, err)
	if perm := di.Mode().Perm(); perm != 0o700 {
		t.Errorf("folder mode = %v, want 0700", perm)
	}
}

func TestOpenWritesSchemaVersion(t *testing.T) {
	db, _ := newTestDB(t)
	err := db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketV1).Get(keySchemaVersion)
		if v, n := binary.Uvarint(raw); n <= 0 || v != SchemaVersion {
			t.Errorf("schema version = %x, want %d", raw, SchemaVersion)
		}
		return nil
	})
	requireNoErr(t, err)
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	db, path := newTestDB(t)
	requireNoErr(t, db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketV1).Put(keySchemaVersion, binary.AppendUvarint(nil, SchemaVersion+1))
	}))
	requireNoErr(t, db.Close())

	_, err := Open(path)
	requireClass(t, err, errdefs.ErrFailedPrecondition)
	errorContains(t, err, path, "newer")

	// Reopen for the cleanup's Close.
	*db = *mustOpenRaw(t, path)
}

// mustOpenRaw opens path without the schema check.
func mustOpenRaw(t *testing.T, path string) *DB {
	t.Helper()
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	requireNoErr(t, err)
	return &DB{bolt: b, path: path}
}

func TestOpenLockedFailsUnavailable(t *testing.T) {
	db, path := newTestDB(t)

	start := time.Now()
	second, err := Open(path, WithOpenTimeout(100*time.Millisecond))
	if err == nil {
		second.Close()
		t.Fatal("a second Open of an open file succeeded")
	}
	requireClass(t, err, errdefs.ErrUnavailable)
	errorContains(t, err, path, "locked")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Open waited %v with a timeout of 100ms", d)
	}

	// Once the first closes, the file opens again.
	requireNoErr(t, db.Close())
	again, err := Open(path, WithOpenTimeout(time.Second))
	requireNoErr(t, err)
	*db = *again
}

func TestOpenNotAFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	requireNoErr(t, os.WriteFile(path, []byte("not a bbolt file, but long enough to have a header of some sort"), 0o600))
	if _, err := Open(path); err == nil {
		t.Fatal("Open of a file that is not bbolt succeeded")
	}
}
