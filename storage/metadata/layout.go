package metadata

import (
	"context"
	"errors"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/filters"
	"github.com/berthrt/berth/namespaces"
)

// The names of buckets and keys; doc.go draws the tree they make.
var (
	bucketV1 = []byte("v1")
	// keySchemaVersion starts with a dot, which no identifier can, so it
	// never collides with a namespace bucket beside it.
	keySchemaVersion = []byte(".version")

	bucketLabels     = []byte("labels")
	bucketContainers = []byte("containers")
	bucketImages     = []byte("images")
	bucketLeases     = []byte("leases")
	bucketContent    = []byte("content")
	bucketSnapshots  = []byte("snapshots")

	// A container's fields.
	keyImage         = []byte("image")
	bucketRuntime    = []byte("runtime")
	keyName          = []byte("name")
	keyOptions       = []byte("options")
	keySpec          = []byte("spec")
	keySnapshotter   = []byte("snapshotter")
	keySnapshotKey   = []byte("snapshotkey")
	keyCreatedAt     = []byte("createdat")
	keyUpdatedAt     = []byte("updatedat")
	bucketExtensions = []byte("extensions")

	// content/blob/<digest>/: a namespace's record of a blob.
	bucketBlob = []byte("blob")
	keySize    = []byte("size")
)

// kind says what one bucket under a namespace holds, so that a refused
// namespace Delete can say what is left in it. The store that fills a
// bucket owns its entry.
type kind struct {
	bucket    []byte
	one, many string // the object's name, singular and plural
	// depth is the number of bucket levels from the kind's bucket down to
	// the keys that are its objects: 1 for containers/<id>, 2 for
	// snapshots/<snapshotter>/<key>.
	depth int
}

var kinds = []kind{
	{bucketContainers, "container", "containers", 1},
	{bucketImages, "image", "images", 1},
	{bucketLeases, "lease", "leases", 1},
	{bucketContent, "content record", "content records", 2},
	{bucketSnapshots, "snapshot", "snapshots", 2},
}

// namespaceBucket returns v1/<ns>, or nil when the namespace does not exist.
func namespaceBucket(tx *bolt.Tx, ns string) *bolt.Bucket {
	v1 := tx.Bucket(bucketV1)
	if v1 == nil {
		return nil
	}
	return v1.Bucket([]byte(ns))
}

// createNamespaceBucket returns v1/<ns>, creating it when absent. ns must be
// a valid identifier.
func createNamespaceBucket(tx *bolt.Tx, ns string) (*bolt.Bucket, error) {
	v1, err := tx.CreateBucketIfNotExists(bucketV1)
	if err != nil {
		return nil, err
	}
	return v1.CreateBucketIfNotExists([]byte(ns))
}

// kindBucket returns v1/<ns>/<name>, or nil when it does not exist.
func kindBucket(tx *bolt.Tx, ns string, name []byte) *bolt.Bucket {
	nsb := namespaceBucket(tx, ns)
	if nsb == nil {
		return nil
	}
	return nsb.Bucket(name)
}

// createKindBucket returns v1/<ns>/<name>, creating the namespace and the
// bucket when absent.
func createKindBucket(tx *bolt.Tx, ns string, name []byte) (*bolt.Bucket, error) {
	nsb, err := createNamespaceBucket(tx, ns)
	if err != nil {
		return nil, err
	}
	return nsb.CreateBucketIfNotExists(name)
}

// namespaceContents describes what nsb holds besides its labels, such as
// "3 containers, 1 image"; it is empty when nothing is left. A bucket that
// no kind describes counts its keys.
func namespaceContents(nsb *bolt.Bucket) string {
	var held []string
	c := nsb.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v != nil || string(k) == string(bucketLabels) {
			continue
		}
		b := nsb.Bucket(k)
		kd := kind{bucket: k, one: fmt.Sprintf("entry in %q", k), many: fmt.Sprintf("entries in %q", k), depth: 1}
		for _, known := range kinds {
			if string(known.bucket) == string(k) {
				kd = known
			}
		}
		switch n := countAtDepth(b, kd.depth); n {
		case 0:
		case 1:
			held = append(held, "1 "+kd.one)
		default:
			held = append(held, fmt.Sprintf("%d %s", n, kd.many))
		}
	}
	return strings.Join(held, ", ")
}

// countAtDepth counts the keys depth levels below b: its own keys at 1, the
// keys of its sub-buckets at 2, and so on.
func countAtDepth(b *bolt.Bucket, depth int) int {
	n := 0
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		switch {
		case depth <= 1:
			n++
		case v == nil:
			n += countAtDepth(b.Bucket(k), depth-1)
		}
	}
	return n
}

// createObjectBucket creates v1/<ns>/<kindName>/<name>, the namespace and
// the kind's bucket too when absent; ErrAlreadyExists, naming the object
// as "<one> <name> in namespace <ns>", when it exists.
func createObjectBucket(tx *bolt.Tx, ns string, kindName []byte, one, name string) (*bolt.Bucket, error) {
	bkt, err := createKindBucket(tx, ns, kindName)
	if err != nil {
		return nil, err
	}
	b, err := bkt.CreateBucket([]byte(name))
	if errors.Is(err, bolterrors.ErrBucketExists) {
		return nil, fmt.Errorf("%s %q in namespace %q: %w", one, name, ns, errdefs.ErrAlreadyExists)
	}
	return b, err
}

// parseListFilters parses the filters of a List of many in ns; a filter
// that does not parse is ErrInvalidArgument.
func parseListFilters(ns, many string, fs []string) (filters.Filter, error) {
	filter, err := filters.ParseAll(fs...)
	if err != nil {
		if !errdefs.IsInvalidArgument(err) {
			err = fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
		}
		return nil, fmt.Errorf("%s in namespace %q: %w", many, ns, err)
	}
	return filter, nil
}

// eachObject calls fn, in key order, for every object of a kind kept one
// bucket per object under v1/<ns>/<kind>; none when the kind's bucket is
// absent. An error from fn stops the walk and is returned.
func eachObject(tx *bolt.Tx, ns string, kind []byte, fn func(key string, b *bolt.Bucket) error) error {
	bkt := kindBucket(tx, ns, kind)
	if bkt == nil {
		return nil
	}
	c := bkt.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v != nil {
			continue
		}
		if err := fn(string(k), bkt.Bucket(k)); err != nil {
			return err
		}
	}
	return nil
}

// listObjects is the List of the stores of containers, images and leases:
// in the namespace of ctx, every object of kind (read by read) that any
// of fs matches (through adapt), in key order. many names the kind in
// errors ("containers").
func listObjects[T any](ctx context.Context, db *DB, kind []byte, many string, fs []string, read func(ns, key string, b *bolt.Bucket) (T, error), adapt func(T) filters.Adaptor) ([]T, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	filter, err := parseListFilters(ns, many, fs)
	if err != nil {
		return nil, err
	}
	var list []T
	err = db.view(ctx, func(tx *bolt.Tx) error {
		return eachObject(tx, ns, kind, func(key string, b *bolt.Bucket) error {
			obj, err := read(ns, key, b)
			if err != nil {
				return err
			}
			if filter.Match(adapt(obj)) {
				list = append(list, obj)
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return list, nil
}
