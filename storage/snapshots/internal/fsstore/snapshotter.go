package fsstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/mount"
	"github.com/berthrt/berth/snapshots"
)

func (s *store) Stat(ctx context.Context, key string) (snapshots.Info, error) {
	if err := snapshots.ValidateKey(key); err != nil {
		return snapshots.Info{}, err
	}
	var r record
	err := withCtx(ctx, s.db.View, func(tx *bolt.Tx) (err error) {
		r, err = s.read(tx, key)
		return err
	})
	return r.info, err
}

func (s *store) Update(ctx context.Context, info snapshots.Info, fieldpaths ...string) (snapshots.Info, error) {
	if err := snapshots.ValidateKey(info.Name); err != nil {
		return snapshots.Info{}, err
	}
	var r record
	err := withCtx(ctx, s.db.Update, func(tx *bolt.Tx) (err error) {
		if r, err = s.read(tx, info.Name); err != nil {
			return err
		}
		if r.info.Labels, err = snapshots.UpdateLabels(r.info.Labels, info, fieldpaths); err != nil {
			return err
		}
		r.info.Updated = time.Now().UTC()
		return write(tx, r)
	})
	return r.info, err
}

func (s *store) Usage(ctx context.Context, key string) (snapshots.Usage, error) {
	if err := snapshots.ValidateKey(key); err != nil {
		return snapshots.Usage{}, err
	}
	var r record
	err := withCtx(ctx, s.db.View, func(tx *bolt.Tx) (err error) {
		r, err = s.read(tx, key)
		return err
	})
	if err != nil || r.info.Kind == snapshots.KindCommitted {
		return r.usage, err
	}
	u, err := s.driver.Usage(s.dir(r.id))
	if err != nil {
		return snapshots.Usage{}, fmt.Errorf("%s: usage of %q: %w", s.name, key, err)
	}
	return u, nil
}

func (s *store) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	if err := snapshots.ValidateKey(key); err != nil {
		return nil, err
	}
	var (
		r       record
		parents []string
	)
	err := withCtx(ctx, s.db.View, func(tx *bolt.Tx) (err error) {
		if r, err = s.read(tx, key); err != nil {
			return err
		}
		if r.info.Kind == snapshots.KindCommitted {
			return fmt.Errorf("%s: snapshot %q is committed; mount a view of it: %w", s.name, key, errdefs.ErrFailedPrecondition)
		}
		parents, _, err = s.chain(tx, r.info.Parent)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.driver.Mounts(s.dir(r.id), r.info.Kind, parents), nil
}

func (s *store) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return s.create(ctx, snapshots.KindActive, key, parent, opts)
}

func (s *store) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return s.create(ctx, snapshots.KindView, key, parent, opts)
}

// create makes the snapshot key of kind: it fills a new-* folder outside
// any transaction (a native copy may take long), then records the
// snapshot and renames the folder to its id in one transaction that checks
// again that key is free and parent unchanged.
func (s *store) create(ctx context.Context, kind snapshots.Kind, key, parent string, opts []snapshots.Opt) (_ []mount.Mount, err error) {
	if err := snapshots.ValidateKey(key); err != nil {
		return nil, err
	}
	if parent != "" {
		if err := snapshots.ValidateKey(parent); err != nil {
			return nil, fmt.Errorf("parent: %w", err)
		}
	}
	base, err := snapshots.ApplyOpts(opts)
	if err != nil {
		return nil, fmt.Errorf("%s: snapshot %q: %w", s.name, key, err)
	}
	var (
		parents  []string
		parentID uint64
	)
	err = withCtx(ctx, s.db.View, func(tx *bolt.Tx) (err error) {
		if err := s.free(tx, key); err != nil {
			return err
		}
		parents, parentID, err = s.chain(tx, parent)
		return err
	})
	if err != nil {
		return nil, err
	}

	tmp, err := os.MkdirTemp(s.snapshotsDir(), "new-")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	dir := tmp // where the folder is: tmp until renamed
	defer func() {
		if err != nil {
			err = errors.Join(err, s.removeAll(dir))
		}
	}()
	if err := os.Chmod(tmp, dirMode); err != nil {
		return nil, err
	}
	if err := s.driver.Create(tmp, kind, parents); err != nil {
		return nil, fmt.Errorf("%s: snapshot %q: %w", s.name, key, err)
	}

	now := time.Now().UTC()
	r := record{info: snapshots.Info{Kind: kind, Name: key, Parent: parent, Labels: base.Labels, Created: now, Updated: now}}
	err = withCtx(ctx, s.db.Update, func(tx *bolt.Tx) error {
		if err := s.free(tx, key); err != nil {
			return err
		}
		again, id, err := s.chain(tx, parent)
		if err != nil {
			return err
		}
		if id != parentID || len(again) != len(parents) {
			return fmt.Errorf("%s: parent %q was removed or replaced meanwhile; try again: %w", s.name, parent, errdefs.ErrUnavailable)
		}
		_, children, ids := buckets(tx)
		if r.id, err = ids.NextSequence(); err != nil {
			return err
		}
		if err := ids.Put(idKey(r.id), []byte(key)); err != nil {
			return err
		}
		if parent != "" {
			cb, err := children.CreateBucketIfNotExists([]byte(parent))
			if err != nil {
				return err
			}
			if err := cb.Put([]byte(key), nil); err != nil {
				return err
			}
		}
		if err := write(tx, r); err != nil {
			return err
		}
		// Last: a failure before it leaves the folder at tmp, removed
		// by the deferred cleanup; after it, at the id.
		if err := os.Rename(tmp, s.dir(r.id)); err != nil {
			return err
		}
		dir = s.dir(r.id)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s.driver.Mounts(dir, kind, parents), nil
}

// free returns ErrAlreadyExists when key names a snapshot.
func (s *store) free(tx *bolt.Tx, key string) error {
	keys, _, _ := buckets(tx)
	if keys.Bucket([]byte(key)) != nil {
		return fmt.Errorf("%s: snapshot %q: %w", s.name, key, errdefs.ErrAlreadyExists)
	}
	return nil
}

func (s *store) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	if err := snapshots.ValidateKey(name); err != nil {
		return err
	}
	if err := snapshots.ValidateKey(key); err != nil {
		return err
	}
	base, err := snapshots.ApplyOpts(opts)
	if err != nil {
		return fmt.Errorf("%s: commit %q: %w", s.name, name, err)
	}
	active, err := s.activeRecord(ctx, key)
	if err != nil {
		return err
	}
	// Measured before the transaction; the caller has unmounted key, so
	// nothing writes to it any more.
	usage, err := s.driver.Usage(s.dir(active.id))
	if err != nil {
		return fmt.Errorf("%s: usage of %q: %w", s.name, key, err)
	}
	// The files first, then the record that says they are a layer: a
	// crash must never leave a committed snapshot with files that were
	// still in the page cache.
	if err := syncFS(s.dir(active.id)); err != nil {
		return fmt.Errorf("%s: commit %q: %w", s.name, name, err)
	}
	// Sealed last before the record: only the transaction can fail after it,
	// and its failure unseals.
	sealer, _ := s.driver.(Sealer)
	if sealer != nil {
		if err := sealer.Seal(s.dir(active.id), true); err != nil {
			return fmt.Errorf("%s: commit %q: %w", s.name, key, err)
		}
	}
	err = s.failAt(FailCommitSealed)
	if err == nil {
		err = withCtx(ctx, s.db.Update, func(tx *bolt.Tx) error {
			return s.commitRecord(tx, name, key, active.id, base.Labels, usage)
		})
	}
	if err != nil && sealer != nil {
		if uerr := sealer.Seal(s.dir(active.id), false); uerr != nil {
			err = errors.Join(err, fmt.Errorf("%s: %q stays read-only: %w", s.name, key, uerr))
		}
	}
	return err
}

// commitRecord turns the active record key, whose folder is id, into the
// committed one name, in tx.
func (s *store) commitRecord(tx *bolt.Tx, name, key string, id uint64, labels map[string]string, usage snapshots.Usage) error {
	r, err := s.read(tx, key)
	if err != nil {
		return err
	}
	if r.info.Kind != snapshots.KindActive || r.id != id {
		return fmt.Errorf("%s: snapshot %q is %s, not active: %w", s.name, key, r.info.Kind, errdefs.ErrFailedPrecondition)
	}
	if err := s.free(tx, name); err != nil {
		return err
	}
	keys, children, ids := buckets(tx)
	if err := keys.DeleteBucket([]byte(key)); err != nil {
		return err
	}
	if r.info.Parent != "" {
		cb := children.Bucket([]byte(r.info.Parent))
		if err := cb.Delete([]byte(key)); err != nil {
			return err
		}
		if err := cb.Put([]byte(name), nil); err != nil {
			return err
		}
	}
	if err := ids.Put(idKey(r.id), []byte(name)); err != nil {
		return err
	}
	now := time.Now().UTC()
	r.info = snapshots.Info{Kind: snapshots.KindCommitted, Name: name, Parent: r.info.Parent, Labels: labels, Created: now, Updated: now}
	r.usage = usage
	return write(tx, r)
}

// activeRecord reads key and checks that it is active.
func (s *store) activeRecord(ctx context.Context, key string) (record, error) {
	var r record
	err := withCtx(ctx, s.db.View, func(tx *bolt.Tx) (err error) {
		r, err = s.read(tx, key)
		return err
	})
	if err == nil && r.info.Kind != snapshots.KindActive {
		err = fmt.Errorf("%s: snapshot %q is %s, not active: %w", s.name, key, r.info.Kind, errdefs.ErrFailedPrecondition)
	}
	return r, err
}

func (s *store) Remove(ctx context.Context, key string) error {
	if err := snapshots.ValidateKey(key); err != nil {
		return err
	}
	var id uint64
	err := withCtx(ctx, s.db.Update, func(tx *bolt.Tx) error {
		r, err := s.read(tx, key)
		if err != nil {
			return err
		}
		keys, children, ids := buckets(tx)
		if cb := children.Bucket([]byte(key)); cb != nil {
			if k, _ := cb.Cursor().First(); k != nil {
				return fmt.Errorf("%s: snapshot %q is the parent of %q: %w", s.name, key, k, errdefs.ErrFailedPrecondition)
			}
			if err := children.DeleteBucket([]byte(key)); err != nil {
				return err
			}
		}
		if r.info.Parent != "" {
			if cb := children.Bucket([]byte(r.info.Parent)); cb != nil {
				if err := cb.Delete([]byte(key)); err != nil {
					return err
				}
			}
		}
		if err := ids.Delete(idKey(r.id)); err != nil {
			return err
		}
		id = r.id
		return keys.DeleteBucket([]byte(key))
	})
	if err != nil {
		return err
	}
	// The record is gone; a crash from here on leaves a folder that the
	// next New removes.
	gone := filepath.Join(s.snapshotsDir(), "rm-"+strconv.FormatUint(id, 10))
	if err := os.Rename(s.dir(id), gone); err != nil {
		if notExist(err) {
			return nil
		}
		return fmt.Errorf("%s: snapshot %q removed, its folder not: %w", s.name, key, err)
	}
	if err := s.removeAll(gone); err != nil {
		return fmt.Errorf("%s: snapshot %q removed, its folder not: %w", s.name, key, err)
	}
	return nil
}

func (s *store) Walk(ctx context.Context, fn snapshots.WalkFunc, fs ...string) error {
	filter, err := snapshots.ParseFilters(fs)
	if err != nil {
		return err
	}
	// fn runs after the transaction: it may call the snapshotter.
	var infos []snapshots.Info
	err = withCtx(ctx, s.db.View, func(tx *bolt.Tx) error {
		keys, _, _ := buckets(tx)
		return keys.ForEach(func(k, _ []byte) error {
			r, err := s.read(tx, string(k))
			if err != nil {
				return err
			}
			if filter.Match(snapshots.InfoAdaptor(r.info)) {
				infos = append(infos, r.info)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, info := range infos {
		if err := fn(ctx, info); err != nil {
			return err
		}
	}
	return nil
}

func (s *store) Close() error {
	return s.db.Close()
}
