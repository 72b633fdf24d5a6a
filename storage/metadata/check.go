package metadata

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	digest "github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/leases"
	"github.com/berthrt/berth/snapshots"
)

// Problem is one disagreement between the records of this file and what
// lies on disk, found by a check.
type Problem struct {
	// What names the class of problem, one of the Problem* constants.
	What string
	// Namespace is where the record is, "" for what no namespace records.
	Namespace string
	// Object names the record or the thing on disk.
	Object string
	// Detail says what is wrong, for a person.
	Detail string
}

func (p Problem) String() string {
	ns := p.Namespace
	if ns == "" {
		ns = "-"
	}
	return fmt.Sprintf("%s\t%s\t%s\t%s", p.What, ns, p.Object, p.Detail)
}

// The classes of Problem.
const (
	// ProblemSnapshotMissing: a record names a snapshot that the
	// snapshotter lacks, or holds as another kind.
	ProblemSnapshotMissing = "snapshot-missing"
	// ProblemSnapshotUnrecorded: the snapshotter holds a snapshot that no
	// record names; GC removes it.
	ProblemSnapshotUnrecorded = "snapshot-unrecorded"
	// ProblemCommitPending: a commit that a crash interrupted; GC settles
	// it.
	ProblemCommitPending = "commit-pending"
	// ProblemContainerSnapshot: a container names a snapshot that its
	// namespace does not record.
	ProblemContainerSnapshot = "container-snapshot-missing"
)

// CheckSnapshots compares the records of the snapshotter sn named name
// (as given to Snapshotter) with what sn holds. It changes nothing.
func (db *DB) CheckSnapshots(ctx context.Context, name string, sn snapshots.Snapshotter) ([]Problem, error) {
	s := &snapshotStore{db: db, name: name, backend: sn}
	type rec struct {
		ns string
		r  snapshotRecord
	}
	var recs []rec
	err := db.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketV1).ForEach(func(ns, v []byte) error {
			if v != nil {
				return nil
			}
			return s.eachRecord(tx, string(ns), func(r snapshotRecord) error {
				recs = append(recs, rec{string(ns), r})
				return nil
			})
		})
	})
	if err != nil {
		return nil, err
	}
	under := map[string]snapshots.Kind{}
	err = sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		under[info.Name] = info.Kind
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk %s: %w", name, err)
	}
	var problems []Problem
	recorded := map[string]bool{}
	for _, rc := range recs {
		r := rc.r
		obj := name + "/" + r.info.Name
		recorded[r.backend] = true
		if kind, ok := under[r.backend]; !ok && r.committing != nil && under[r.committing.backend] == snapshots.KindCommitted {
			// Committed underneath, its record not yet: pending, below.
		} else if !ok {
			problems = append(problems, Problem{ProblemSnapshotMissing, rc.ns, obj, fmt.Sprintf("%s snapshot %q is not in the snapshotter", r.info.Kind, r.backend)})
		} else if kind != r.info.Kind {
			problems = append(problems, Problem{ProblemSnapshotMissing, rc.ns, obj, fmt.Sprintf("recorded %s, %q underneath is %s", r.info.Kind, r.backend, kind)})
		}
		if r.committing != nil {
			recorded[r.committing.backend] = true
			problems = append(problems, Problem{ProblemCommitPending, rc.ns, obj, fmt.Sprintf("commit as %q (underneath %q) under way", r.committing.name, r.committing.backend)})
		}
	}
	for _, key := range slices.Sorted(maps.Keys(under)) {
		if !recorded[key] {
			problems = append(problems, Problem{ProblemSnapshotUnrecorded, "", name + "/" + key, fmt.Sprintf("%s snapshot that no record names", under[key])})
		}
	}
	return problems, nil
}

// CheckContainers reports the containers whose snapshot their namespace
// does not record. It changes nothing.
func (db *DB) CheckContainers(ctx context.Context) ([]Problem, error) {
	var problems []Problem
	err := db.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketV1).ForEach(func(ns, v []byte) error {
			if v != nil {
				return nil
			}
			cb := kindBucket(tx, string(ns), bucketContainers)
			if cb == nil {
				return nil
			}
			return cb.ForEach(func(id, v []byte) error {
				if v != nil {
					return nil
				}
				c, err := readContainer(string(id), cb.Bucket(id))
				if err != nil {
					problems = append(problems, Problem{"container-unreadable", string(ns), string(id), err.Error()})
					return nil
				}
				if c.SnapshotKey == "" {
					return nil
				}
				s := &snapshotStore{db: db, name: c.Snapshotter}
				if _, err := s.readRecord(tx, string(ns), c.SnapshotKey); err != nil {
					problems = append(problems, Problem{ProblemContainerSnapshot, string(ns), string(id), err.Error()})
				}
				return nil
			})
		})
	})
	return problems, err
}

// The classes of Problem that CheckContent finds.
const (
	// ProblemBlobMissing: a namespace records a blob that the local store
	// lacks.
	ProblemBlobMissing = "blob-missing"
	// ProblemBlobUnrecorded: the local store holds a blob that no
	// namespace records; GC removes it.
	ProblemBlobUnrecorded = "blob-unrecorded"
	// ProblemIngestStale: a half-written ingest that no lease holds and
	// that has been idle for longer than GC's ingest TTL: GC should have
	// aborted it. A younger one is a download that a crash interrupted
	// and that the next pull resumes (its lease went with the crash), as
	// designed, not damage.
	ProblemIngestStale = "ingest-stale"
)

// CheckContent compares the content records with the local store under
// them: blobs recorded but missing, blobs that no namespace records, and
// ingests that no lease holds and that have been idle for longer than
// ingestTTL (DefaultIngestTTL when 0). It changes nothing.
func (db *DB) CheckContent(ctx context.Context, local content.Store, ingestTTL time.Duration) ([]Problem, error) {
	if ingestTTL <= 0 {
		ingestTTL = DefaultIngestTTL
	}
	recorded := map[digest.Digest][]string{} // blob → namespaces
	leased := map[string]bool{}              // "<ns>/<ref>"
	err := db.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketV1).ForEach(func(ns, v []byte) error {
			if v != nil {
				return nil
			}
			if nsb := kindBucket(tx, string(ns), bucketContent); nsb != nil && nsb.Bucket(bucketBlob) != nil {
				err := nsb.Bucket(bucketBlob).ForEach(func(k, v []byte) error {
					if v == nil {
						recorded[digest.Digest(k)] = append(recorded[digest.Digest(k)], string(ns))
					}
					return nil
				})
				if err != nil {
					return err
				}
			}
			all, err := readLeases(tx, string(ns))
			if err != nil {
				return err
			}
			lb := kindBucket(tx, string(ns), bucketLeases)
			for _, l := range all {
				err := walkLeaseResources(lb.Bucket([]byte(l.ID)), func(r leases.Resource) error {
					if r.Type == leases.ResourceIngest {
						leased[string(ns)+"/"+r.ID] = true
					}
					return nil
				})
				if err != nil {
					return err
				}
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	var problems []Problem
	stored := map[digest.Digest]bool{}
	err = local.Walk(ctx, func(info content.Info) error {
		stored[info.Digest] = true
		if recorded[info.Digest] == nil {
			problems = append(problems, Problem{ProblemBlobUnrecorded, "", info.Digest.String(), fmt.Sprintf("%d bytes that no namespace records", info.Size)})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk blobs: %w", err)
	}
	for _, dgst := range slices.Sorted(maps.Keys(recorded)) {
		if !stored[dgst] {
			for _, ns := range recorded[dgst] {
				problems = append(problems, Problem{ProblemBlobMissing, ns, dgst.String(), "recorded, not in the content store"})
			}
		}
	}
	statuses, err := local.ListStatuses(ctx)
	if err != nil {
		return nil, fmt.Errorf("list ingests: %w", err)
	}
	now := time.Now()
	for _, st := range statuses {
		last := st.UpdatedAt
		if last.Before(st.StartedAt) {
			last = st.StartedAt
		}
		if !leased[st.Ref] && now.Sub(last) > ingestTTL {
			problems = append(problems, Problem{ProblemIngestStale, "", st.Ref,
				fmt.Sprintf("%d of %d bytes, idle since %s, no lease holds it", st.Offset, st.Total, st.UpdatedAt.Format(time.RFC3339))})
		}
	}
	return problems, nil
}
