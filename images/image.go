package images

import (
	"context"
	"fmt"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/errdefs"
)

// Image is the record of an image: a name for a target descriptor (an
// index or a manifest in the content store). The content it reaches is
// kept by garbage collection for as long as the record exists.
type Image struct {
	// Name is a reference such as docker.io/library/busybox:latest; unique
	// in its namespace; immutable. See ValidateImageName.
	Name string
	// Target is the root of the image's content: media type, digest and
	// size are required; annotations, platform and urls are kept.
	Target ocispec.Descriptor
	// Labels are free metadata; a label with an empty value is not stored.
	// berth.io/gc.ref.* labels add references for garbage collection.
	Labels map[string]string
	// CreatedAt and UpdatedAt are set by the store, in UTC.
	CreatedAt, UpdatedAt time.Time
}

// Store keeps the images of the namespace on each call's context
// (namespaces.NamespaceRequired). A name is unique within its namespace and
// invisible from any other. Deleting an image removes the record only;
// garbage collection removes the content nothing else reaches.
type Store interface {
	// Get returns the image name; ErrNotFound if absent.
	Get(ctx context.Context, name string) (Image, error)
	// List returns the images that match any of filters (all when none),
	// ordered by name. Fields: name, target.digest, target.mediatype,
	// target.size, labels.<key>, annotations.<key> (the target's).
	List(ctx context.Context, filters ...string) ([]Image, error)
	// Create stores img, creating the namespace when it is absent, and
	// returns the record as stored; ErrAlreadyExists if the name is taken.
	Create(ctx context.Context, img Image) (Image, error)
	// Update changes the fields of image img.Name that fieldpaths name:
	// labels, labels.<key>, target, annotations, annotations.<key> (the
	// target's); all of labels and target when none is named. It returns
	// the record as stored; ErrNotFound if absent.
	Update(ctx context.Context, img Image, fieldpaths ...string) (Image, error)
	// Delete removes the image name; ErrNotFound if absent.
	Delete(ctx context.Context, name string) error
}

// MaxImageNameSize bounds Image.Name, in bytes: room for a registry host, a
// 255-byte repository path, a 128-byte tag and a sha512 digest.
const MaxImageNameSize = 1024

// ValidateImageName checks an image name: 1 to MaxImageNameSize bytes of
// printable ASCII without white space. Names are references (a host, a
// path, a tag after ':', a digest after '@'), which the store keeps as
// bbolt keys of their own: no character is special there. Parsing and
// normalising a reference is for the caller (distribution); the store only
// refuses what no reference can be.
func ValidateImageName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("image name must not be empty: %w", errdefs.ErrInvalidArgument)
	case len(name) > MaxImageNameSize:
		return fmt.Errorf("image name %.40q…: %d bytes, more than %d: %w", name, len(name), MaxImageNameSize, errdefs.ErrInvalidArgument)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("image name %q: byte %d (%#x) is not printable ASCII: %w", name, i, c, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}
