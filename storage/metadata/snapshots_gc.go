package metadata

import (
	"context"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/snapshots"
)

// SnapshotCollector returns the collector of the snapshotter sn named
// name, which db.Snapshotter(name, sn) gives namespaces: GCOptions take
// it. Its Remove deletes the namespace's records that GC did not reach,
// then removes every snapshot of sn that no namespace records, children
// before parents.
//
// GC calls Walk and Remove with DB.gcLock held exclusively, and the
// namespaced view's Prepare, View and Commit hold it for reading: no
// snapshot is made underneath while the collector compares what lies
// underneath with the records.
func (db *DB) SnapshotCollector(name string, sn snapshots.Snapshotter) SnapshotCollector {
	return &snapshotCollector{s: &snapshotStore{db: db, name: name, backend: sn}}
}

type snapshotCollector struct {
	s *snapshotStore
}

func (c *snapshotCollector) Snapshotter() string { return c.s.name }

// Walk first settles the commits that a crash or an I/O error left under
// way in ns (see snapshotStore.Commit), so that GC judges the snapshots as
// they are.
func (c *snapshotCollector) Walk(ctx context.Context, ns string, fn func(key, parent string, labels map[string]string) error) error {
	var records []snapshotRecord
	err := c.s.db.update(ctx, func(tx *bolt.Tx) error {
		var pending []string
		err := c.s.eachRecord(tx, ns, func(r snapshotRecord) error {
			if r.committing != nil {
				pending = append(pending, r.info.Name)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, key := range pending {
			if _, err := c.s.settle(ctx, tx, ns, key); err != nil {
				return err
			}
		}
		return c.s.eachRecord(tx, ns, func(r snapshotRecord) error {
			records = append(records, r)
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, r := range records {
		if err := fn(r.info.Name, r.info.Parent, r.info.Labels); err != nil {
			return err
		}
	}
	return nil
}

func (c *snapshotCollector) Remove(ctx context.Context, ns string, keep map[string]struct{}) (int, error) {
	removed := 0
	err := c.s.db.update(ctx, func(tx *bolt.Tx) error {
		var gone []snapshotRecord
		err := c.s.eachRecord(tx, ns, func(r snapshotRecord) error {
			if _, ok := keep[r.info.Name]; !ok {
				gone = append(gone, r)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, r := range gone {
			if err := c.s.deleteRecord(tx, ns, r); err != nil {
				return err
			}
		}
		removed = len(gone)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return removed, c.sweep(ctx)
}

// sweep removes the snapshots of the backend that no namespace records,
// leaves first: a parent refused for its children is tried again once
// they are gone.
func (c *snapshotCollector) sweep(ctx context.Context) error {
	recorded := map[string]struct{}{}
	err := c.s.db.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketV1).ForEach(func(ns, v []byte) error {
			if v != nil {
				return nil
			}
			return c.s.eachRecord(tx, string(ns), func(r snapshotRecord) error {
				recorded[r.backend] = struct{}{}
				if r.committing != nil {
					// Committed underneath, perhaps, and its record
					// not yet written: never swept.
					recorded[r.committing.backend] = struct{}{}
				}
				return nil
			})
		})
	})
	if err != nil {
		return err
	}
	var stray []string
	err = c.s.backend.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if _, ok := recorded[info.Name]; !ok {
			stray = append(stray, info.Name)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("walk %s: %w", c.s.name, err)
	}
	for len(stray) > 0 {
		var left []string
		var errs []error
		for _, key := range stray {
			switch err := c.s.backend.Remove(ctx, key); {
			case err == nil, errdefs.IsNotFound(err):
			case errdefs.IsFailedPrecondition(err):
				left = append(left, key)
			default:
				errs = append(errs, fmt.Errorf("remove %q from %s: %w", key, c.s.name, err))
			}
		}
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
		if len(left) == len(stray) {
			return fmt.Errorf("%s: %d snapshots that no namespace records have children that one does: %w",
				c.s.name, len(left), errdefs.ErrInternal)
		}
		stray = left
	}
	return nil
}
