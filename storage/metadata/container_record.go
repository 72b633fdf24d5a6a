package metadata

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/berthrt/berth/containers"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/filters"
	"github.com/berthrt/berth/identifiers"
)

// Container bounds. With the label bounds they keep one container record
// below ttrpc's 4 MiB message limit, so that Get always fits one response.
const (
	// MaxSpecSize bounds Container.Spec, in bytes.
	MaxSpecSize = 1 << 20
	// MaxReferenceSize bounds Container.Image and Runtime.Name, in bytes.
	MaxReferenceSize = 4096
	// MaxRuntimeOptionsSize bounds Runtime.Options, marshalled, in bytes.
	MaxRuntimeOptionsSize = 64 << 10
	// MaxExtensions bounds the number of Container.Extensions.
	MaxExtensions = 64
	// MaxExtensionKeySize bounds the key of one extension, in bytes.
	MaxExtensionKeySize = 256
	// MaxExtensionsSize bounds all extensions together, marshalled, in
	// bytes.
	MaxExtensionsSize = 1 << 20
)

// validateContainer checks c as it is about to be stored. Errors wrap
// errdefs.ErrInvalidArgument and name the container and the field.
func validateContainer(c containers.Container) error {
	if err := validateContainerID(c.ID); err != nil {
		return err
	}
	if err := validateFields(c); err != nil {
		return fmt.Errorf("container %q: %w", c.ID, err)
	}
	return nil
}

func validateFields(c containers.Container) error {
	if err := validateLabels(c.Labels); err != nil {
		return err
	}
	if err := validateReference("image", c.Image); err != nil {
		return err
	}
	if c.Runtime.Name == "" {
		return fmt.Errorf("runtime.name is required: %w", errdefs.ErrInvalidArgument)
	}
	if err := validateReference("runtime.name", c.Runtime.Name); err != nil {
		return err
	}
	if err := validateRuntimeName(c.Runtime.Name); err != nil {
		return err
	}
	if err := validateAny("runtime.options", c.Runtime.Options, MaxRuntimeOptionsSize); err != nil {
		return err
	}
	if err := validateSpec(c.Spec); err != nil {
		return err
	}
	if c.Snapshotter != "" {
		if err := identifiers.Validate(c.Snapshotter); err != nil {
			return fmt.Errorf("snapshotter: %w", err)
		}
	}
	if c.SnapshotKey != "" {
		if c.Snapshotter == "" {
			return fmt.Errorf("snapshotter is required with snapshotkey %q: %w", c.SnapshotKey, errdefs.ErrInvalidArgument)
		}
		if err := identifiers.Validate(c.SnapshotKey); err != nil {
			return fmt.Errorf("snapshotkey: %w", err)
		}
	}
	return validateExtensions(c.Extensions)
}

// validateReference checks a free-form name: valid UTF-8 and bounded.
func validateReference(field, s string) error {
	switch {
	case len(s) > MaxReferenceSize:
		return fmt.Errorf("%s: %d bytes, more than %d: %w", field, len(s), MaxReferenceSize, errdefs.ErrInvalidArgument)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s %q is not valid UTF-8: %w", field, s, errdefs.ErrInvalidArgument)
	}
	return nil
}

// validateRuntimeName accepts what the API documents: a name looked up in
// PATH (no '/') or a clean absolute path, without white space or control
// characters. Root runs it: a relative path would resolve against the
// shim's working folder, and the name is stored on a line of its own in
// the bundle.
func validateRuntimeName(name string) error {
	if i := strings.IndexFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }); i >= 0 {
		return fmt.Errorf("runtime.name %q: no white space or control characters: %w", name, errdefs.ErrInvalidArgument)
	}
	if strings.Contains(name, "/") && (!filepath.IsAbs(name) || filepath.Clean(name) != name) {
		return fmt.Errorf("runtime.name %q: a name in PATH or a clean absolute path: %w", name, errdefs.ErrInvalidArgument)
	}
	return nil
}

// validateSpec checks that spec is a JSON object that decodes as an OCI
// runtime spec. Fields it does not know are allowed (a newer spec version),
// fields of the wrong type are not.
func validateSpec(spec []byte) error {
	if len(spec) == 0 {
		return fmt.Errorf("spec is required: %w", errdefs.ErrInvalidArgument)
	}
	if len(spec) > MaxSpecSize {
		return fmt.Errorf("spec: %d bytes, more than %d: %w", len(spec), MaxSpecSize, errdefs.ErrInvalidArgument)
	}
	if !bytes.HasPrefix(bytes.TrimLeft(spec, " \t\r\n"), []byte("{")) {
		return fmt.Errorf("spec must be a JSON object: %w", errdefs.ErrInvalidArgument)
	}
	var s specs.Spec
	if err := json.Unmarshal(spec, &s); err != nil {
		return fmt.Errorf("spec is not an OCI runtime spec: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	return nil
}

// validateAny checks an optional typed value: nil, or a type URL and a
// marshalled size of at most limit.
func validateAny(field string, a *anypb.Any, limit int) error {
	if a == nil {
		return nil
	}
	if a.GetTypeUrl() == "" {
		return fmt.Errorf("%s has no type URL: %w", field, errdefs.ErrInvalidArgument)
	}
	if !utf8.ValidString(a.GetTypeUrl()) {
		return fmt.Errorf("%s: type URL is not valid UTF-8: %w", field, errdefs.ErrInvalidArgument)
	}
	if n := proto.Size(a); n > limit {
		return fmt.Errorf("%s: %d bytes, more than %d: %w", field, n, limit, errdefs.ErrInvalidArgument)
	}
	return nil
}

func validateExtensions(exts map[string]*anypb.Any) error {
	n, size := 0, 0
	for k, v := range exts {
		switch {
		case k == "":
			return fmt.Errorf("extension key must not be empty: %w", errdefs.ErrInvalidArgument)
		case len(k) > MaxExtensionKeySize:
			return fmt.Errorf("extension %.64q: key of %d bytes, more than %d: %w", k, len(k), MaxExtensionKeySize, errdefs.ErrInvalidArgument)
		case !utf8.ValidString(k):
			return fmt.Errorf("extension key %q is not valid UTF-8: %w", k, errdefs.ErrInvalidArgument)
		case v == nil:
			continue
		}
		if err := validateAny(fmt.Sprintf("extension %q", k), v, MaxExtensionsSize); err != nil {
			return err
		}
		n++
		size += proto.Size(v)
	}
	if n > MaxExtensions {
		return fmt.Errorf("%d extensions, more than %d: %w", n, MaxExtensions, errdefs.ErrInvalidArgument)
	}
	if size > MaxExtensionsSize {
		return fmt.Errorf("extensions: %d bytes, more than %d: %w", size, MaxExtensionsSize, errdefs.ErrInvalidArgument)
	}
	return nil
}

// writeContainer writes every field of c into its bucket cb. It puts and
// deletes the keys it knows one by one, so keys written by a newer berthd
// survive an update by an older one.
func writeContainer(cb *bolt.Bucket, c containers.Container) error {
	created, err := c.CreatedAt.MarshalBinary()
	if err != nil {
		return err
	}
	updated, err := c.UpdatedAt.MarshalBinary()
	if err != nil {
		return err
	}
	for _, kv := range []struct {
		key   []byte
		value []byte
	}{
		{keyCreatedAt, created},
		{keyUpdatedAt, updated},
		{keyImage, []byte(c.Image)},
		{keySpec, c.Spec},
		{keySnapshotter, []byte(c.Snapshotter)},
		{keySnapshotKey, []byte(c.SnapshotKey)},
	} {
		if err := putOrDelete(cb, kv.key, kv.value); err != nil {
			return err
		}
	}

	rb, err := cb.CreateBucketIfNotExists(bucketRuntime)
	if err != nil {
		return err
	}
	if err := rb.Put(keyName, []byte(c.Runtime.Name)); err != nil {
		return err
	}
	if err := putAny(rb, keyOptions, c.Runtime.Options); err != nil {
		return err
	}

	if cb.Bucket(bucketExtensions) != nil {
		if err := cb.DeleteBucket(bucketExtensions); err != nil {
			return err
		}
	}
	var eb *bolt.Bucket
	for k, v := range c.Extensions {
		if v == nil {
			continue
		}
		if eb == nil {
			if eb, err = cb.CreateBucket(bucketExtensions); err != nil {
				return err
			}
		}
		if err := putAny(eb, []byte(k), v); err != nil {
			return err
		}
	}

	return writeLabels(cb, c.Labels)
}

// putOrDelete stores value at key, or removes key when value is empty: an
// absent key reads as the zero value.
func putOrDelete(b *bolt.Bucket, key, value []byte) error {
	if len(value) == 0 {
		return b.Delete(key)
	}
	return b.Put(key, value)
}

func putAny(b *bolt.Bucket, key []byte, a *anypb.Any) error {
	if a == nil {
		return b.Delete(key)
	}
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(a)
	if err != nil {
		return err
	}
	return b.Put(key, raw)
}

// readContainer decodes the container id from its bucket cb. Everything
// is copied out of the transaction. A record that does not decode is an
// ErrInternal.
func readContainer(id string, cb *bolt.Bucket) (containers.Container, error) {
	c := containers.Container{
		ID:          id,
		Image:       string(cb.Get(keyImage)),
		Spec:        bytes.Clone(cb.Get(keySpec)),
		Snapshotter: string(cb.Get(keySnapshotter)),
		SnapshotKey: string(cb.Get(keySnapshotKey)),
		Labels:      readLabels(cb),
	}
	corrupt := func(field string, err error) error {
		return fmt.Errorf("container %q: stored %s does not decode: %v: %w", id, field, err, errdefs.ErrInternal)
	}
	for _, t := range []struct {
		key []byte
		to  *time.Time
	}{{keyCreatedAt, &c.CreatedAt}, {keyUpdatedAt, &c.UpdatedAt}} {
		if raw := cb.Get(t.key); raw != nil {
			if err := t.to.UnmarshalBinary(raw); err != nil {
				return containers.Container{}, corrupt(string(t.key), err)
			}
		}
	}
	if rb := cb.Bucket(bucketRuntime); rb != nil {
		c.Runtime.Name = string(rb.Get(keyName))
		opts, err := getAny(rb, keyOptions)
		if err != nil {
			return containers.Container{}, corrupt("runtime.options", err)
		}
		c.Runtime.Options = opts
	}
	if eb := cb.Bucket(bucketExtensions); eb != nil {
		err := eb.ForEach(func(k, _ []byte) error {
			a, err := getAny(eb, k)
			if err != nil {
				return corrupt(fmt.Sprintf("extension %q", k), err)
			}
			if a != nil {
				if c.Extensions == nil {
					c.Extensions = map[string]*anypb.Any{}
				}
				c.Extensions[string(k)] = a
			}
			return nil
		})
		if err != nil {
			return containers.Container{}, err
		}
	}
	return c, nil
}

// getAny decodes the Any at key; nil when absent.
func getAny(b *bolt.Bucket, key []byte) (*anypb.Any, error) {
	raw := b.Get(key)
	if raw == nil {
		return nil, nil
	}
	a := &anypb.Any{}
	if err := proto.Unmarshal(bytes.Clone(raw), a); err != nil {
		return nil, err
	}
	return a, nil
}

// containerAdaptor exposes c's fields to a filter, with the presence rules
// of package filters: a scalar is present whenever the path names it, even
// when empty (image=="" finds containers without an image); a label is
// present when its key exists.
func containerAdaptor(c containers.Container) filters.Adaptor {
	return filters.AdapterFunc(func(fieldpath []string) (string, bool) {
		if len(fieldpath) == 0 {
			return "", false
		}
		switch fieldpath[0] {
		case "id":
			return filters.Value(c.ID, fieldpath[1:])
		case "image":
			return filters.Value(c.Image, fieldpath[1:])
		case "snapshotter":
			return filters.Value(c.Snapshotter, fieldpath[1:])
		case "snapshotkey":
			return filters.Value(c.SnapshotKey, fieldpath[1:])
		case "runtime":
			if len(fieldpath) > 1 && fieldpath[1] == "name" {
				return filters.Value(c.Runtime.Name, fieldpath[2:])
			}
		case "labels":
			return filters.Labels(c.Labels, fieldpath[1:])
		}
		return "", false
	})
}
