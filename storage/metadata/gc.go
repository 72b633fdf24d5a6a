package metadata

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/gc"
	"github.com/berthrt/berth/identifiers"
	"github.com/berthrt/berth/leases"
	"github.com/berthrt/berth/snapshots"
)

// DefaultIngestTTL is how long an ingest that no lease holds may go
// without a write before garbage collection aborts it.
const DefaultIngestTTL = 24 * time.Hour

// SnapshotCollector is what garbage collection needs of one snapshotter;
// DB.SnapshotCollector gives one per snapshotter. Collect calls Walk and
// Remove with the collector's exclusive lock held (see DB), so a snapshot
// created meanwhile must take it for reading as content commits do, or
// Remove must keep snapshots newer than the Walk.
type SnapshotCollector interface {
	// Snapshotter is the name lease resources
	// (ResourceSnapshotPrefix+name) and berth.io/gc.ref.snapshot.<name>
	// labels use.
	Snapshotter() string
	// Walk calls fn for every snapshot of ns with its parent key ("" for
	// none) and labels. A kept snapshot keeps its parent and what its
	// berth.io/gc.ref.* labels name.
	Walk(ctx context.Context, ns string, fn func(key, parent string, labels map[string]string) error) error
	// Remove removes the snapshots of ns whose key is not in keep, and
	// returns how many it removed.
	Remove(ctx context.Context, ns string, keep map[string]struct{}) (int, error)
}

// GCOptions configure a GC.
type GCOptions struct {
	// IngestTTL is how long an ingest no lease holds may stay idle;
	// DefaultIngestTTL when 0.
	IngestTTL time.Duration
	// Snapshots are the snapshotters whose snapshots are collected too.
	Snapshots []SnapshotCollector
	// Now returns the current time; time.Now when nil. For tests of
	// expiry.
	Now func() time.Time
}

// GC is the garbage collector of a DB and the local store its content
// records name. Collect marks from the roots of every namespace and
// sweeps what is not reached.
//
// Roots: images (their target and berth.io/gc.ref.* labels), containers
// (their snapshot and labels), unexpired leases (every resource), content
// records labelled berth.io/gc.root. From a reached content record or
// snapshot, its berth.io/gc.ref.* labels (and a snapshot's parent) reach
// further. Sweep: content records nothing reaches, expired leases, then
// blobs of the local store that no namespace records, ingests idle for
// longer than IngestTTL that no lease holds (an ingest with an open Writer
// is never aborted), and unreached snapshots.
type GC struct {
	db    *DB
	local content.Store
	opts  GCOptions

	mu sync.Mutex // one collection at a time
}

// NewGC returns the collector of db over local, the store that
// db.ContentStore(local) records blobs of.
func NewGC(db *DB, local content.Store, opts GCOptions) *GC {
	if opts.IngestTTL <= 0 {
		opts.IngestTTL = DefaultIngestTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &GC{db: db, local: local, opts: opts}
}

// node is one object of the graph in one namespace: a blob ("content",
// digest) or a snapshot ("snapshots/<snapshotter>", key).
type node struct {
	typ, key string
}

// snapshotInfo is what a SnapshotCollector's Walk said of one snapshot.
type snapshotInfo struct {
	parent string
	labels map[string]string
}

// Collect runs one collection and says what it removed. Content commits
// and the blob sweep exclude each other; everything else goes on.
func (c *GC) Collect(ctx context.Context) (gc.Stats, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	start := time.Now()
	c.db.gcLock.Lock()
	defer c.db.gcLock.Unlock()

	var stats gc.Stats
	nss, err := c.db.Namespaces().List(ctx)
	if err != nil {
		return stats, err
	}
	// The snapshotters answer before the transaction: they may read db.
	snaps := map[string]map[string]map[string]snapshotInfo{} // ns → snapshotter → key
	for _, ns := range nss {
		snaps[ns] = map[string]map[string]snapshotInfo{}
		for _, sc := range c.opts.Snapshots {
			m := map[string]snapshotInfo{}
			err := sc.Walk(ctx, ns, func(key, parent string, labels map[string]string) error {
				m[key] = snapshotInfo{parent: parent, labels: labels}
				return nil
			})
			if err != nil {
				return stats, fmt.Errorf("gc: snapshotter %s in namespace %q: %w", sc.Snapshotter(), ns, err)
			}
			snaps[ns][sc.Snapshotter()] = m
		}
	}

	now := c.opts.Now()
	recorded := map[digest.Digest]struct{}{}                 // blobs some namespace still records
	leasedIngests := map[string]struct{}{}                   // local refs: "<ns>/<ref>"
	keepSnaps := map[string]map[string]map[string]struct{}{} // ns → snapshotter → keys
	err = c.db.update(ctx, func(tx *bolt.Tx) error {
		for _, ns := range nss {
			removedLeases, err := expireLeases(tx, ns, now)
			if err != nil {
				return fmt.Errorf("gc: expire leases of namespace %q: %w", ns, err)
			}
			stats.Leases += removedLeases
			reached, err := mark(tx, ns, snaps[ns], leasedIngests)
			if err != nil {
				return fmt.Errorf("gc: mark namespace %q: %w", ns, err)
			}
			n, err := sweepContent(tx, ns, reached, recorded)
			if err != nil {
				return fmt.Errorf("gc: sweep namespace %q: %w", ns, err)
			}
			stats.ContentRecords += n
			keepSnaps[ns] = map[string]map[string]struct{}{}
			for nd := range reached {
				if snapshotter, ok := strings.CutPrefix(nd.typ, leases.ResourceSnapshotPrefix); ok {
					if keepSnaps[ns][snapshotter] == nil {
						keepSnaps[ns][snapshotter] = map[string]struct{}{}
					}
					keepSnaps[ns][snapshotter][nd.key] = struct{}{}
				}
			}
		}
		return nil
	})
	if err != nil {
		return stats, err
	}

	var errs []error
	if err := c.sweepBlobs(ctx, recorded, &stats); err != nil {
		errs = append(errs, err)
	}
	if err := c.sweepIngests(ctx, now, leasedIngests, &stats); err != nil {
		errs = append(errs, err)
	}
	for _, ns := range nss {
		for _, sc := range c.opts.Snapshots {
			n, err := sc.Remove(ctx, ns, keepSnaps[ns][sc.Snapshotter()])
			stats.Snapshots += n
			if err != nil {
				errs = append(errs, fmt.Errorf("gc: snapshotter %s in namespace %q: %w", sc.Snapshotter(), ns, err))
			}
		}
	}
	stats.Duration = time.Since(start)
	return stats, errors.Join(errs...)
}

// expireLeases deletes the leases of ns whose expiry label is before now,
// with their resources (not what those name: the mark that follows no
// longer reaches it), and returns how many it deleted.
func expireLeases(tx *bolt.Tx, ns string, now time.Time) (int, error) {
	all, err := readLeases(tx, ns)
	if err != nil {
		return 0, err
	}
	removed := 0
	for _, l := range all {
		if !l.Expired(now) {
			continue
		}
		if err := kindBucket(tx, ns, bucketLeases).DeleteBucket([]byte(l.ID)); err != nil {
			return removed, err
		}
		removed++
	}
	return removed, nil
}

// mark returns the nodes of ns reachable from its roots — images,
// containers, leases (expireLeases has deleted the expired ones), content
// records and snapshots labelled gc.LabelRoot — and adds the ingests the
// leases hold to leasedIngests, as "<ns>/<ref>".
func mark(tx *bolt.Tx, ns string, snaps map[string]map[string]snapshotInfo, leasedIngests map[string]struct{}) (map[node]struct{}, error) {
	m := &marker{reached: map[node]struct{}{}}
	blobs := blobsBucket(tx, ns)
	for _, roots := range []func() error{
		func() error { return m.images(tx, ns) },
		func() error { return m.containers(tx, ns) },
		func() error { return m.leases(tx, ns, leasedIngests) },
		func() error { return m.labelledRoots(blobs, snaps) },
	} {
		if err := roots(); err != nil {
			return nil, err
		}
	}
	m.follow(blobs, snaps)
	return m.reached, nil
}

// marker is one namespace's mark: the nodes reached so far, and those whose
// references are still to follow.
type marker struct {
	reached map[node]struct{}
	queue   []node
}

func (m *marker) add(n node) {
	if _, ok := m.reached[n]; !ok {
		m.reached[n] = struct{}{}
		m.queue = append(m.queue, n)
	}
}

// addRefs adds what the berth.io/gc.ref.* labels among labels name.
func (m *marker) addRefs(labels map[string]string) {
	for k, v := range labels {
		if n, ok := refNode(k, v); ok {
			m.add(n)
		}
	}
}

// images adds every image's target and references.
func (m *marker) images(tx *bolt.Tx, ns string) error {
	return eachObject(tx, ns, bucketImages, func(_ string, ib *bolt.Bucket) error {
		if tb := ib.Bucket(bucketTarget); tb != nil {
			m.add(node{leases.ResourceContent, string(tb.Get(keyDigest))})
		}
		m.addRefs(readLabels(ib))
		return nil
	})
}

// containers adds every container's snapshot and references.
func (m *marker) containers(tx *bolt.Tx, ns string) error {
	return eachObject(tx, ns, bucketContainers, func(_ string, cb *bolt.Bucket) error {
		if key := cb.Get(keySnapshotKey); len(key) > 0 {
			m.add(node{leases.ResourceSnapshotPrefix + string(cb.Get(keySnapshotter)), string(key)})
		}
		m.addRefs(readLabels(cb))
		return nil
	})
}

// leases adds every resource the leases hold; an ingest goes to
// leasedIngests instead, for the sweep of ingests.
func (m *marker) leases(tx *bolt.Tx, ns string, leasedIngests map[string]struct{}) error {
	return eachObject(tx, ns, bucketLeases, func(_ string, lb *bolt.Bucket) error {
		return walkLeaseResources(lb, func(r leases.Resource) error {
			if r.Type == leases.ResourceIngest {
				leasedIngests[ns+"/"+r.ID] = struct{}{}
				return nil
			}
			m.add(node{r.Type, r.ID})
			return nil
		})
	})
}

// labelledRoots adds the content records and snapshots labelled
// gc.LabelRoot. A snapshot a user made by hand (berthctl snapshots
// prepare) so stays until it is removed, as in containerd.
func (m *marker) labelledRoots(blobs *bolt.Bucket, snaps map[string]map[string]snapshotInfo) error {
	if blobs != nil {
		err := blobs.ForEach(func(k, v []byte) error {
			if v != nil {
				return nil
			}
			if lb := blobs.Bucket(k).Bucket(bucketLabels); lb != nil && lb.Get([]byte(gc.LabelRoot)) != nil {
				m.add(node{leases.ResourceContent, string(k)})
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	for snapshotter, keys := range snaps {
		for key, info := range keys {
			if _, ok := info.labels[gc.LabelRoot]; ok {
				m.add(node{leases.ResourceSnapshotPrefix + snapshotter, key})
			}
		}
	}
	return nil
}

// follow reaches along the references of what was reached: a content
// record's gc.ref labels, a snapshot's parent and labels.
func (m *marker) follow(blobs *bolt.Bucket, snaps map[string]map[string]snapshotInfo) {
	for len(m.queue) > 0 {
		n := m.queue[0]
		m.queue = m.queue[1:]
		if n.typ == leases.ResourceContent {
			if blobs == nil {
				continue
			}
			if b := blobs.Bucket([]byte(n.key)); b != nil {
				m.addRefs(readLabels(b))
			}
			continue
		}
		snapshotter, _ := strings.CutPrefix(n.typ, leases.ResourceSnapshotPrefix)
		if info, ok := snaps[snapshotter][n.key]; ok {
			if info.parent != "" {
				m.add(node{n.typ, info.parent})
			}
			m.addRefs(info.labels)
		}
	}
}

// refNode returns the node a berth.io/gc.ref.* label names, if it is one
// and its value is valid.
func refNode(key, value string) (node, bool) {
	if rest, ok := strings.CutPrefix(key, gc.LabelRefContent); ok && (rest == "" || rest[0] == '.') {
		if digest.Digest(value).Validate() != nil {
			return node{}, false
		}
		return node{leases.ResourceContent, value}, true
	}
	if rest, ok := strings.CutPrefix(key, gc.LabelRefSnapshot+"."); ok {
		snapshotter, _, _ := strings.Cut(rest, "/")
		if identifiers.Validate(snapshotter) != nil || snapshots.ValidateKey(value) != nil {
			return node{}, false
		}
		return node{leases.ResourceSnapshotPrefix + snapshotter, value}, true
	}
	return node{}, false
}

// sweepContent deletes the content records of ns that are not reached,
// and adds those it keeps to recorded.
func sweepContent(tx *bolt.Tx, ns string, reached map[node]struct{}, recorded map[digest.Digest]struct{}) (int, error) {
	blobs := blobsBucket(tx, ns)
	if blobs == nil {
		return 0, nil
	}
	var gone [][]byte
	err := blobs.ForEach(func(k, v []byte) error {
		if v != nil {
			return nil
		}
		if _, ok := reached[node{leases.ResourceContent, string(k)}]; ok {
			recorded[digest.Digest(k)] = struct{}{}
		} else {
			gone = append(gone, append([]byte(nil), k...))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, k := range gone {
		if err := blobs.DeleteBucket(k); err != nil {
			return 0, err
		}
	}
	return len(gone), nil
}

// sweepBlobs removes the blobs of the local store that no namespace
// records.
func (c *GC) sweepBlobs(ctx context.Context, recorded map[digest.Digest]struct{}, stats *gc.Stats) error {
	var gone []content.Info
	err := c.local.Walk(ctx, func(info content.Info) error {
		if _, ok := recorded[info.Digest]; !ok {
			gone = append(gone, info)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("gc: walk blobs: %w", err)
	}
	var errs []error
	for _, info := range gone {
		if err := c.local.Delete(ctx, info.Digest); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("gc: %w", err))
			continue
		}
		stats.Blobs++
		stats.BlobBytes += info.Size
	}
	return errors.Join(errs...)
}

// sweepIngests aborts the ingests that no lease holds and that have been
// idle for longer than IngestTTL. An ingest with an open Writer refuses
// the Abort (ErrUnavailable) and stays.
func (c *GC) sweepIngests(ctx context.Context, now time.Time, leased map[string]struct{}, stats *gc.Stats) error {
	all, err := c.local.ListStatuses(ctx)
	if err != nil {
		return fmt.Errorf("gc: list ingests: %w", err)
	}
	var errs []error
	for _, st := range all {
		if _, ok := leased[st.Ref]; ok {
			continue
		}
		last := st.UpdatedAt
		if last.Before(st.StartedAt) {
			last = st.StartedAt
		}
		if now.Sub(last) <= c.opts.IngestTTL {
			continue
		}
		switch err := c.local.Abort(ctx, st.Ref); {
		case err == nil:
			stats.Ingests++
		case errdefs.IsUnavailable(err), errdefs.IsNotFound(err):
		default:
			errs = append(errs, fmt.Errorf("gc: %w", err))
		}
	}
	return errors.Join(errs...)
}

// blobsBucket returns v1/<ns>/content/blob, or nil.
func blobsBucket(tx *bolt.Tx, ns string) *bolt.Bucket {
	bkt := kindBucket(tx, ns, bucketContent)
	if bkt == nil {
		return nil
	}
	return bkt.Bucket(bucketBlob)
}
