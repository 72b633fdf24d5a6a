package metadata

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/filters"
	"github.com/berthrt/berth/images"
	"github.com/berthrt/berth/namespaces"
)

// Bounds of an image record's target (images.MaxImageNameSize bounds its
// name).
const (
	// MaxMediaTypeSize bounds a descriptor's media type (RFC 6838 allows
	// 127 bytes on each side of the '/').
	MaxMediaTypeSize = 255
	// MaxAnnotationsSize bounds the annotations of a target together
	// (keys and values), in bytes.
	MaxAnnotationsSize = 64 << 10
	// MaxURLs bounds Target.URLs.
	MaxURLs = 16
)

// Images returns the image store of db.
func (db *DB) Images() images.Store {
	return &imageStore{db: db}
}

type imageStore struct {
	db *DB
}

// validateDescriptor checks a descriptor that the store keeps: a media
// type, a valid digest, a positive size and bounded annotations and urls.
func validateDescriptor(field string, d ocispec.Descriptor) error {
	switch {
	case d.MediaType == "":
		return fmt.Errorf("%s.mediatype is required: %w", field, errdefs.ErrInvalidArgument)
	case len(d.MediaType) > MaxMediaTypeSize || !isPrintableASCII(d.MediaType):
		return fmt.Errorf("%s.mediatype %.64q: printable ASCII of at most %d bytes: %w", field, d.MediaType, MaxMediaTypeSize, errdefs.ErrInvalidArgument)
	case d.Size <= 0:
		return fmt.Errorf("%s.size %d: must be positive: %w", field, d.Size, errdefs.ErrInvalidArgument)
	case len(d.URLs) > MaxURLs:
		return fmt.Errorf("%s.urls: %d, more than %d: %w", field, len(d.URLs), MaxURLs, errdefs.ErrInvalidArgument)
	}
	if err := d.Digest.Validate(); err != nil {
		return fmt.Errorf("%s.digest %.80q: %v: %w", field, d.Digest, err, errdefs.ErrInvalidArgument)
	}
	total := 0
	for k, v := range d.Annotations {
		if err := validateLabel(k, v); err != nil {
			return fmt.Errorf("%s.annotations: %w", field, err)
		}
		total += len(k) + len(v)
	}
	for _, u := range d.URLs {
		if err := validateReference(field+".urls", u); err != nil {
			return err
		}
		total += len(u)
	}
	if total > MaxAnnotationsSize {
		return fmt.Errorf("%s: annotations and urls take %d bytes, more than %d: %w", field, total, MaxAnnotationsSize, errdefs.ErrInvalidArgument)
	}
	return nil
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// ValidateImage checks an image as Create and Update do (name, labels,
// target), for a caller that must know before it records it.
func ValidateImage(img images.Image) error { return validateImage(img) }

func validateImage(img images.Image) error {
	if err := images.ValidateImageName(img.Name); err != nil {
		return err
	}
	if err := validateLabels(img.Labels); err != nil {
		return fmt.Errorf("image %q: %w", img.Name, err)
	}
	if err := validateDescriptor("target", img.Target); err != nil {
		return fmt.Errorf("image %q: %w", img.Name, err)
	}
	return nil
}

// namespaceAndImage returns the namespace of ctx once it and name are
// valid.
func namespaceAndImage(ctx context.Context, name string) (string, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return "", err
	}
	return ns, images.ValidateImageName(name)
}

func (s *imageStore) Get(ctx context.Context, name string) (images.Image, error) {
	ns, err := namespaceAndImage(ctx, name)
	if err != nil {
		return images.Image{}, err
	}
	var img images.Image
	err = s.db.view(ctx, func(tx *bolt.Tx) error {
		ib := imageBucket(tx, ns, name)
		if ib == nil {
			return imageNotFound(ns, name)
		}
		img, err = readImage(ns, name, ib)
		return err
	})
	return img, err
}

func (s *imageStore) List(ctx context.Context, fs ...string) ([]images.Image, error) {
	return listObjects(ctx, s.db, bucketImages, "images", fs, readImage, imageAdaptor)
}

func (s *imageStore) Create(ctx context.Context, img images.Image) (images.Image, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return images.Image{}, err
	}
	if err := validateImage(img); err != nil {
		return images.Image{}, err
	}
	var stored images.Image
	err = s.db.update(ctx, func(tx *bolt.Tx) error {
		ib, err := createObjectBucket(tx, ns, bucketImages, "image", img.Name)
		if err != nil {
			return err
		}
		img.CreatedAt = time.Now().UTC()
		img.UpdatedAt = img.CreatedAt
		if err := writeImage(ib, img); err != nil {
			return fmt.Errorf("image %q in namespace %q: write: %w", img.Name, ns, err)
		}
		stored, err = readImage(ns, img.Name, ib)
		return err
	})
	return stored, err
}

func (s *imageStore) Update(ctx context.Context, img images.Image, fieldpaths ...string) (images.Image, error) {
	ns, err := namespaceAndImage(ctx, img.Name)
	if err != nil {
		return images.Image{}, err
	}
	if err := checkImageFieldpaths(img.Name, fieldpaths); err != nil {
		return images.Image{}, err
	}
	var stored images.Image
	err = s.db.update(ctx, func(tx *bolt.Tx) error {
		ib := imageBucket(tx, ns, img.Name)
		if ib == nil {
			return imageNotFound(ns, img.Name)
		}
		current, err := readImage(ns, img.Name, ib)
		if err != nil {
			return err
		}
		next := applyImageFieldpaths(current, img, fieldpaths)
		if err := validateImage(next); err != nil {
			return err
		}
		next.UpdatedAt = time.Now().UTC()
		if err := writeImage(ib, next); err != nil {
			return fmt.Errorf("image %q in namespace %q: write: %w", img.Name, ns, err)
		}
		stored, err = readImage(ns, img.Name, ib)
		return err
	})
	return stored, err
}

func (s *imageStore) Delete(ctx context.Context, name string) error {
	ns, err := namespaceAndImage(ctx, name)
	if err != nil {
		return err
	}
	err = s.db.update(ctx, func(tx *bolt.Tx) error {
		bkt := kindBucket(tx, ns, bucketImages)
		if bkt == nil || bkt.Bucket([]byte(name)) == nil {
			return imageNotFound(ns, name)
		}
		return bkt.DeleteBucket([]byte(name))
	})
	if err == nil {
		s.db.dirtied()
	}
	return err
}

// imageMutableFields are the field paths an image Update knows; without
// field paths labels and target are replaced.
var imageMutableFields = []string{"labels", "target", "annotations"}

func checkImageFieldpaths(name string, fieldpaths []string) error {
	for _, p := range fieldpaths {
		for _, prefix := range []string{"labels.", "annotations."} {
			if key, ok := strings.CutPrefix(p, prefix); ok && key == "" {
				return fmt.Errorf("image %q: field path %q names no key: %w", name, p, errdefs.ErrInvalidArgument)
			}
		}
		switch {
		case strings.HasPrefix(p, "labels."), strings.HasPrefix(p, "annotations."):
		case slices.Contains(imageMutableFields, p):
		case p == "name", p == "createdat", p == "updatedat":
			return fmt.Errorf("image %q: field %q is immutable: %w", name, p, errdefs.ErrInvalidArgument)
		default:
			return fmt.Errorf("image %q: unknown field path %q: %w", name, p, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// applyImageFieldpaths returns current with the fields that fieldpaths
// name taken from in.
func applyImageFieldpaths(current, in images.Image, fieldpaths []string) images.Image {
	next := current
	if len(fieldpaths) == 0 {
		fieldpaths = []string{"labels", "target"}
	}
	for _, p := range fieldpaths {
		if key, ok := strings.CutPrefix(p, "labels."); ok {
			next.Labels = cloneSet(next.Labels, key, in.Labels[key])
			continue
		}
		if key, ok := strings.CutPrefix(p, "annotations."); ok {
			next.Target.Annotations = cloneSet(next.Target.Annotations, key, in.Target.Annotations[key])
			continue
		}
		switch p {
		case "labels":
			next.Labels = in.Labels
		case "target":
			next.Target = in.Target
		case "annotations":
			next.Target.Annotations = in.Target.Annotations
		}
	}
	return next
}

// cloneSet returns a copy of m with key set to value, or removed when value
// is empty.
func cloneSet(m map[string]string, key, value string) map[string]string {
	out := make(map[string]string, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	if value == "" {
		delete(out, key)
	} else {
		out[key] = value
	}
	return out
}

// imageBucket returns v1/<ns>/images/<name>, or nil.
func imageBucket(tx *bolt.Tx, ns, name string) *bolt.Bucket {
	bkt := kindBucket(tx, ns, bucketImages)
	if bkt == nil {
		return nil
	}
	return bkt.Bucket([]byte(name))
}

func imageNotFound(ns, name string) error {
	return fmt.Errorf("image %q in namespace %q: %w", name, ns, errdefs.ErrNotFound)
}

// imageAdaptor exposes an image's fields to a filter.
func imageAdaptor(img images.Image) filters.Adaptor {
	return filters.AdapterFunc(func(fieldpath []string) (string, bool) {
		switch fieldpath[0] {
		case "name":
			return filters.Value(img.Name, fieldpath[1:])
		case "target":
			if len(fieldpath) < 2 {
				return "", false
			}
			switch fieldpath[1] {
			case "digest":
				return filters.Value(img.Target.Digest.String(), fieldpath[2:])
			case "mediatype":
				return filters.Value(img.Target.MediaType, fieldpath[2:])
			case "size":
				return filters.Value(fmt.Sprint(img.Target.Size), fieldpath[2:])
			}
		case "labels":
			return filters.Labels(img.Labels, fieldpath[1:])
		case "annotations":
			return filters.Labels(img.Target.Annotations, fieldpath[1:])
		}
		return "", false
	})
}
