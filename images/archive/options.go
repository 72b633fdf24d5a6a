package archive

import (
	"fmt"
	"strings"

	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/distribution"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/images"
	"github.com/berthrt/berth/storage/metadata"
)

// Opt sets an option of Import or Export. Each says which of them it
// applies to; the other refuses it with ErrInvalidArgument.
type Opt func(*options) error

type options struct {
	platform    *ocispec.Platform // nil: distribution.DefaultPlatform
	all         bool
	progress    distribution.ProgressFunc
	namePrefix  string           // import
	indexName   string           // import
	images      []metadata.Image // export
	unpack      bool             // the daemon's import
	snapshotter string           // the daemon's import
	daemonOnly  []string         // names of options only the daemon's import takes
	importOnly  []string         // names of import-only options given
	exportOnly  []string         // names of export-only options given
}

func newOptions(opts []Opt) (*options, error) {
	o := &options{}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	if o.all && o.platform != nil {
		return nil, fmt.Errorf("WithPlatform and WithAllPlatforms together: %w", errdefs.ErrInvalidArgument)
	}
	return o, nil
}

// matcher is the platform matcher the options ask for; nil for all.
func (o *options) matcher() platforms.MatchComparer {
	if o.all {
		return nil
	}
	p := images.DefaultPlatform()
	if o.platform != nil {
		p = *o.platform
	}
	return platforms.OnlyStrict(p)
}

func (o *options) platformString() string {
	if o.all {
		return "all platforms"
	}
	if o.platform != nil {
		return platforms.Format(*o.platform)
	}
	return platforms.Format(images.DefaultPlatform())
}

func (o *options) report(p distribution.Progress) {
	if o.progress != nil {
		o.progress(p)
	}
}

// WithPlatform (Import and Export) takes, from an index, only the
// manifests for p (and entries without a platform), instead of
// distribution.DefaultPlatform (linux/amd64). Matching is strict (the
// variant must agree when p names one), by github.com/containerd/platforms.
func WithPlatform(p ocispec.Platform) Opt {
	return func(o *options) error {
		if p.OS == "" || p.Architecture == "" {
			return fmt.Errorf("WithPlatform %q: os and architecture are required: %w", platforms.Format(p), errdefs.ErrInvalidArgument)
		}
		p = platforms.Normalize(p)
		o.platform = &p
		return nil
	}
}

// WithAllPlatforms (Import and Export) takes every manifest of an index.
func WithAllPlatforms() Opt {
	return func(o *options) error {
		o.all = true
		return nil
	}
}

// WithProgress (Import and Export) sends a report for each blob to fn:
// StatusDownloading while an imported blob's bytes arrive (Offset says
// how many), StatusUploading while an exported one's leave, StatusExists
// for an imported blob the store had, StatusDone when a blob is
// committed or written. Calls come from the goroutine of Import or
// Export, one at a time; a slow fn slows the transfer.
func WithProgress(fn distribution.ProgressFunc) Opt {
	return func(o *options) error {
		o.progress = fn
		return nil
	}
}

// WithNamePrefix (Import) names images as containerd's `ctr import
// --base-name` does: an index.json entry whose
// org.opencontainers.image.ref.name is only a tag ("latest") becomes the
// image prefix:tag, and a name that is a whole reference is taken only
// when it starts with prefix; other entries get no image.
func WithNamePrefix(prefix string) Opt {
	return func(o *options) error {
		if prefix == "" || strings.ContainsAny(prefix, ":@") && !strings.Contains(prefix, "/") {
			return fmt.Errorf("WithNamePrefix %q: a repository name such as example.com/app: %w", prefix, errdefs.ErrInvalidArgument)
		}
		if err := metadata.ValidateImageName(prefix); err != nil {
			return err
		}
		o.namePrefix = prefix
		o.importOnly = append(o.importOnly, "WithNamePrefix")
		return nil
	}
}

// WithIndexName (Import) also records the archive's whole index as the
// image name: index.json as it is for an OCI layout, an OCI index of the
// converted manifests for a docker save archive.
func WithIndexName(name string) Opt {
	return func(o *options) error {
		if err := metadata.ValidateImageName(name); err != nil {
			return err
		}
		o.indexName = name
		o.importOnly = append(o.importOnly, "WithIndexName")
		return nil
	}
}

// WithImages (Export) adds images to the archive, each as an entry of
// index.json named by its Name; an image's Target is its root. Two
// names may share a target: the blobs are written once.
func WithImages(imgs ...metadata.Image) Opt {
	return func(o *options) error {
		for _, img := range imgs {
			if img.Name == "" {
				return fmt.Errorf("WithImages: an image without a name: %w", errdefs.ErrInvalidArgument)
			}
			if err := img.Target.Digest.Validate(); err != nil {
				return fmt.Errorf("WithImages: image %q: target digest: %w: %w", img.Name, err, errdefs.ErrInvalidArgument)
			}
		}
		o.images = append(o.images, imgs...)
		o.exportOnly = append(o.exportOnly, "WithImages")
		return nil
	}
}

// WithUnpack (the daemon's Import: client.Import) has the daemon unpack
// each imported image's layers into snapshots, in the snapshotter named
// (the daemon's default when empty), as a pull with unpack does.
// archive.Import only writes blobs and records images: it refuses it.
func WithUnpack(snapshotter string) Opt {
	return func(o *options) error {
		o.unpack = true
		o.snapshotter = snapshotter
		o.daemonOnly = append(o.daemonOnly, "WithUnpack")
		o.importOnly = append(o.importOnly, "WithUnpack")
		return nil
	}
}
