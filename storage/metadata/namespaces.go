package metadata

import (
	"context"
	"errors"
	"fmt"
	"maps"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/identifiers"
)

// NamespaceStore keeps the namespaces and their labels. A namespace is
// created explicitly with Create or implicitly by the first object created
// in it, and can be deleted only once it holds nothing but labels.
type NamespaceStore interface {
	// Create creates ns with labels; ErrAlreadyExists if it exists.
	Create(ctx context.Context, ns string, labels map[string]string) error
	// Labels returns the labels of ns (never nil); ErrNotFound if absent.
	Labels(ctx context.Context, ns string) (map[string]string, error)
	// SetLabel sets one label of ns; an empty value removes it.
	SetLabel(ctx context.Context, ns, key, value string) error
	// SetLabels applies changes to the labels of ns in one transaction:
	// each key is set to its value, and an empty value removes it. The
	// bounds apply to the result; on error nothing changes.
	SetLabels(ctx context.Context, ns string, changes map[string]string) error
	// List returns the namespaces in byte order.
	List(ctx context.Context) ([]string, error)
	// Delete removes ns with its labels. It fails with
	// ErrFailedPrecondition, naming what is left, while ns holds any
	// object; ErrNotFound if absent.
	Delete(ctx context.Context, ns string) error
}

// Namespaces returns the namespace store of db.
func (db *DB) Namespaces() NamespaceStore {
	return &namespaceStore{db: db}
}

type namespaceStore struct {
	db *DB
}

func (s *namespaceStore) Create(ctx context.Context, ns string, labels map[string]string) error {
	if err := validateNamespace(ns); err != nil {
		return err
	}
	if err := validateLabels(labels); err != nil {
		return fmt.Errorf("namespace %q: %w", ns, err)
	}
	return s.db.update(ctx, func(tx *bolt.Tx) error {
		v1, err := tx.CreateBucketIfNotExists(bucketV1)
		if err != nil {
			return err
		}
		nsb, err := v1.CreateBucket([]byte(ns))
		if err != nil {
			if errors.Is(err, bolterrors.ErrBucketExists) {
				return fmt.Errorf("namespace %q: %w", ns, errdefs.ErrAlreadyExists)
			}
			return fmt.Errorf("namespace %q: %w", ns, err)
		}
		return writeLabels(nsb, labels)
	})
}

func (s *namespaceStore) Labels(ctx context.Context, ns string) (map[string]string, error) {
	if err := validateNamespace(ns); err != nil {
		return nil, err
	}
	labels := map[string]string{}
	err := s.db.view(ctx, func(tx *bolt.Tx) error {
		nsb := namespaceBucket(tx, ns)
		if nsb == nil {
			return fmt.Errorf("namespace %q: %w", ns, errdefs.ErrNotFound)
		}
		maps.Copy(labels, readLabels(nsb))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return labels, nil
}

func (s *namespaceStore) SetLabel(ctx context.Context, ns, key, value string) error {
	return s.SetLabels(ctx, ns, map[string]string{key: value})
}

func (s *namespaceStore) SetLabels(ctx context.Context, ns string, changes map[string]string) error {
	if err := validateNamespace(ns); err != nil {
		return err
	}
	for k, v := range changes {
		if err := validateLabel(k, v); err != nil {
			return fmt.Errorf("namespace %q: %w", ns, err)
		}
	}
	return s.db.update(ctx, func(tx *bolt.Tx) error {
		nsb := namespaceBucket(tx, ns)
		if nsb == nil {
			return fmt.Errorf("namespace %q: %w", ns, errdefs.ErrNotFound)
		}
		labels := readLabels(nsb)
		if labels == nil {
			labels = map[string]string{}
		}
		maps.Copy(labels, changes)
		if err := validateLabels(labels); err != nil {
			return fmt.Errorf("namespace %q: %w", ns, err)
		}
		return writeLabels(nsb, labels)
	})
}

func (s *namespaceStore) List(ctx context.Context) ([]string, error) {
	var list []string
	err := s.db.view(ctx, func(tx *bolt.Tx) error {
		v1 := tx.Bucket(bucketV1)
		if v1 == nil {
			return nil
		}
		c := v1.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if v == nil { // a bucket; plain keys are the schema's own
				list = append(list, string(k))
			}
		}
		return nil
	})
	return list, err
}

func (s *namespaceStore) Delete(ctx context.Context, ns string) error {
	if err := validateNamespace(ns); err != nil {
		return err
	}
	return s.db.update(ctx, func(tx *bolt.Tx) error {
		nsb := namespaceBucket(tx, ns)
		if nsb == nil {
			return fmt.Errorf("namespace %q: %w", ns, errdefs.ErrNotFound)
		}
		if held := namespaceContents(nsb); held != "" {
			return fmt.Errorf("namespace %q: holds %s: %w", ns, held, errdefs.ErrFailedPrecondition)
		}
		return tx.Bucket(bucketV1).DeleteBucket([]byte(ns))
	})
}

// validateNamespace checks a namespace given as an argument (rather than on
// the context) and names it in the error.
func validateNamespace(ns string) error {
	if err := identifiers.Validate(ns); err != nil {
		return fmt.Errorf("namespace: %w", err)
	}
	return nil
}
