package metadata

import (
	"fmt"
	"maps"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"

	"github.com/berthrt/berth/errdefs"
)

// Label bounds, shared by every object that carries labels. With them a
// container's labels take at most 1 MiB, so that a whole container record
// stays below ttrpc's 4 MiB message limit.
const (
	// MaxLabelSize bounds len(key)+len(value) of one label, in bytes.
	MaxLabelSize = 4096
	// MaxLabels bounds the number of labels on one object.
	MaxLabels = 256
)

// validateLabel checks one label: a non-empty key, key and value valid
// UTF-8 (the API carries them as protobuf strings), and the size bound. An
// empty value is valid: it means "no such label".
func validateLabel(key, value string) error {
	switch {
	case key == "":
		return fmt.Errorf("label key must not be empty: %w", errdefs.ErrInvalidArgument)
	case !utf8.ValidString(key):
		return fmt.Errorf("label key %q is not valid UTF-8: %w", key, errdefs.ErrInvalidArgument)
	case !utf8.ValidString(value):
		return fmt.Errorf("label %q: value is not valid UTF-8: %w", key, errdefs.ErrInvalidArgument)
	case len(key)+len(value) > MaxLabelSize:
		return fmt.Errorf("label %.64q: key and value take %d bytes, more than %d: %w",
			key, len(key)+len(value), MaxLabelSize, errdefs.ErrInvalidArgument)
	}
	return nil
}

// validateLabels checks every label and the count of those with a value.
func validateLabels(labels map[string]string) error {
	n := 0
	for k, v := range labels {
		if err := validateLabel(k, v); err != nil {
			return err
		}
		if v != "" {
			n++
		}
	}
	if n > MaxLabels {
		return fmt.Errorf("%d labels, more than %d: %w", n, MaxLabels, errdefs.ErrInvalidArgument)
	}
	return nil
}

// cleanLabels returns a copy of labels without the empty values, nil when
// none is left.
func cleanLabels(labels map[string]string) map[string]string {
	out := maps.Clone(labels)
	maps.DeleteFunc(out, func(_, v string) bool { return v == "" })
	if len(out) == 0 {
		return nil
	}
	return out
}

// writeLabels replaces the labels bucket under parent with labels; labels
// with an empty value are not stored, and no bucket is left when none is.
func writeLabels(parent *bolt.Bucket, labels map[string]string) error {
	if parent.Bucket(bucketLabels) != nil {
		if err := parent.DeleteBucket(bucketLabels); err != nil {
			return err
		}
	}
	labels = cleanLabels(labels)
	if len(labels) == 0 {
		return nil
	}
	b, err := parent.CreateBucket(bucketLabels)
	if err != nil {
		return err
	}
	for k, v := range labels {
		if err := b.Put([]byte(k), []byte(v)); err != nil {
			return err
		}
	}
	return nil
}

// readLabels returns the labels under parent, copied out of the
// transaction; nil when there are none.
func readLabels(parent *bolt.Bucket) map[string]string {
	b := parent.Bucket(bucketLabels)
	if b == nil {
		return nil
	}
	var labels map[string]string
	_ = b.ForEach(func(k, v []byte) error {
		if v == nil {
			return nil
		}
		if labels == nil {
			labels = map[string]string{}
		}
		labels[string(k)] = string(v)
		return nil
	})
	return labels
}
