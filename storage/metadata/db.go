package metadata

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/berthrt/berth/errdefs"
)

// SchemaVersion is the version of the layout under the v1 bucket that this
// build writes. Open refuses a file with a newer version, and upgrades an
// older one through the migrations before anything else reads it.
const SchemaVersion = 1

// DefaultOpenTimeout is how long Open waits for the file lock that another
// process (another berthd) holds before it gives up.
const DefaultOpenTimeout = 2 * time.Second

// fileMode is the mode of a new database file: container specs may carry
// secrets in their environment.
const fileMode = 0o600

// dirMode is the mode of the parent folders Open creates.
const dirMode = 0o700

// migration upgrades the v1 bucket from schema version from to from+1.
type migration struct {
	from    uint64
	migrate func(tx *bolt.Tx) error
}

// migrations run in order on Open, each in the same transaction that then
// records the new version. Empty until the schema changes for the first
// time.
var migrations []migration

// DB is berthd's metadata store: one bbolt file shared by every store of
// this package. It is safe for concurrent use.
type DB struct {
	bolt *bolt.DB
	path string

	// gcLock keeps garbage collection's sweep of the shared blobs apart
	// from commits: a commit holds it for reading from the moment the
	// bytes land in the local store until the namespace's record exists,
	// so that a blob is never swept between the two.
	gcLock *sync.RWMutex
	// deleted receives a value (without blocking) after every delete that
	// may leave garbage behind; a GC scheduler reads it.
	deleted chan struct{}
	// failpoint, set only by this package's tests before any use, is
	// called at each named step of a multi-store operation (see
	// failpoints.go); an error it returns fails the operation there.
	failpoint func(step string) error
}

// Option changes how Open opens the database.
type Option func(*options)

type options struct {
	timeout time.Duration
}

// WithOpenTimeout sets how long Open waits for the file lock; see
// DefaultOpenTimeout. d must be positive: bbolt would wait forever on 0.
func WithOpenTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.timeout = d
		}
	}
}

// Open opens the metadata database at path, creating the file (mode 0600)
// and its parent folders (0700) when they do not exist, and brings the
// schema up to SchemaVersion. The file is locked for as long as the DB is
// open: while another process holds it, Open waits up to the open timeout
// and then fails with an error of class errdefs.ErrUnavailable that names
// the file.
func Open(path string, opts ...Option) (*DB, error) {
	o := options{timeout: DefaultOpenTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	if err := os.MkdirAll(filepath.Dir(path), dirMode); err != nil {
		return nil, fmt.Errorf("metadata: create the folder of %s: %w", path, err)
	}
	bdb, err := bolt.Open(path, fileMode, &bolt.Options{Timeout: o.timeout})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("metadata: %s is locked by another process (is another berthd running?); gave up after %v: %w",
				path, o.timeout, errdefs.ErrUnavailable)
		}
		return nil, fmt.Errorf("metadata: open %s: %w", path, err)
	}
	db := &DB{bolt: bdb, path: path, gcLock: new(sync.RWMutex), deleted: make(chan struct{}, 1)}
	if err := db.bolt.Update(upgradeSchema); err != nil {
		return nil, errors.Join(fmt.Errorf("metadata: %s: %w", path, err), bdb.Close())
	}
	return db, nil
}

// Close releases the file and its lock. It waits for transactions under way.
func (db *DB) Close() error {
	return db.bolt.Close()
}

// View runs fn in a read-only transaction. It is for the stores of this
// package; fn must not keep any slice it reads past its return.
func (db *DB) View(fn func(*bolt.Tx) error) error {
	return db.bolt.View(fn)
}

// Update runs fn in a read-write transaction, committed when fn returns nil
// and rolled back when it returns an error or panics.
func (db *DB) Update(fn func(*bolt.Tx) error) error {
	return db.bolt.Update(fn)
}

// view and update are View and Update for a request: they refuse to start
// once ctx is done. A transaction itself is not interrupted.
func (db *DB) view(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return db.bolt.View(fn)
}

func (db *DB) update(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return db.bolt.Update(fn)
}

// upgradeSchema creates the v1 bucket and its schema version on a new file,
// runs the migrations an older file needs, and refuses a newer file.
func upgradeSchema(tx *bolt.Tx) error {
	v1, err := tx.CreateBucketIfNotExists(bucketV1)
	if err != nil {
		return err
	}
	version := uint64(SchemaVersion)
	if raw := v1.Get(keySchemaVersion); raw != nil {
		var n int
		version, n = binary.Uvarint(raw)
		if n <= 0 {
			return fmt.Errorf("schema version %x is not a uvarint: %w", raw, errdefs.ErrInternal)
		}
	}
	if version > SchemaVersion {
		return fmt.Errorf("schema version %d is newer than this berthd understands (%d): %w",
			version, SchemaVersion, errdefs.ErrFailedPrecondition)
	}
	for _, m := range migrations {
		if m.from == version {
			if err := m.migrate(tx); err != nil {
				return fmt.Errorf("migrate schema version %d: %w", m.from, err)
			}
			version++
		}
	}
	return v1.Put(keySchemaVersion, binary.AppendUvarint(nil, version))
}

// dirtied tells a GC scheduler, if any, that something was deleted.
func (db *DB) dirtied() {
	select {
	case db.deleted <- struct{}{}:
	default:
	}
}
