// Package archiveopts holds the options of images/archive's Import and
// Export apart from their implementation, so that the client library
// (which sends them to the daemon) and berthctl build them without
// linking the archive reader and its reference parser. Package archive
// aliases them; callers use either.
package archiveopts

import (
	"fmt"
	"strings"

	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/images"
	"github.com/berthrt/berth/images/progress"
)

// Opt sets an option of Import or Export. Each says which of them it
// applies to; the other refuses it with ErrInvalidArgument.
type Opt func(*Settings) error

// WithPlatform (Import and Export) takes, from an index, only the
// manifests for p (and entries without a platform), instead of
// images.DefaultPlatform (linux/amd64). Matching is strict (the
// variant must agree when p names one), by github.com/containerd/platforms.
func WithPlatform(p ocispec.Platform) Opt {
	return func(o *Settings) error {
		if p.OS == "" || p.Architecture == "" {
			return fmt.Errorf("WithPlatform %q: os and architecture are required: %w", platforms.Format(p), errdefs.ErrInvalidArgument)
		}
		p = platforms.Normalize(p)
		o.Platform = &p
		return nil
	}
}

// WithAllPlatforms (Import and Export) takes every manifest of an index.
func WithAllPlatforms() Opt {
	return func(o *Settings) error {
		o.AllPlatforms = true
		return nil
	}
}

// WithProgress (Import and Export) sends a report for each blob to fn:
// StatusDownloading while an imported blob's bytes arrive (Offset says
// how many), StatusUploading while an exported one's leave, StatusExists
// for an imported blob the store had, StatusDone when a blob is
// committed or written. Calls come from the goroutine of Import or
// Export, one at a time; a slow fn slows the transfer.
func WithProgress(fn progress.Func) Opt {
	return func(o *Settings) error {
		o.Progress = fn
		return nil
	}
}

// WithNamePrefix (Import) names images as containerd's `ctr import
// --base-name` does: an index.json entry whose
// org.opencontainers.image.ref.name is only a tag ("latest") becomes the
// image prefix:tag, and a name that is a whole reference is taken only
// when it starts with prefix; other entries get no image.
func WithNamePrefix(prefix string) Opt {
	return func(o *Settings) error {
		if prefix == "" || strings.ContainsAny(prefix, ":@") && !strings.Contains(prefix, "/") {
			return fmt.Errorf("WithNamePrefix %q: a repository name such as example.com/app: %w", prefix, errdefs.ErrInvalidArgument)
		}
		if err := images.ValidateImageName(prefix); err != nil {
			return err
		}
		o.NamePrefix = prefix
		o.ImportOnly = append(o.ImportOnly, "WithNamePrefix")
		return nil
	}
}

// WithIndexName (Import) also records the archive's whole index as the
// image name: index.json as it is for an OCI layout, an OCI index of the
// converted manifests for a docker save archive.
func WithIndexName(name string) Opt {
	return func(o *Settings) error {
		if err := images.ValidateImageName(name); err != nil {
			return err
		}
		o.IndexName = name
		o.ImportOnly = append(o.ImportOnly, "WithIndexName")
		return nil
	}
}

// WithImages (Export) adds images to the archive, each as an entry of
// index.json named by its Name; an image's Target is its root. Two
// names may share a target: the blobs are written once.
func WithImages(imgs ...images.Image) Opt {
	return func(o *Settings) error {
		for _, img := range imgs {
			if img.Name == "" {
				return fmt.Errorf("WithImages: an image without a name: %w", errdefs.ErrInvalidArgument)
			}
			if err := img.Target.Digest.Validate(); err != nil {
				return fmt.Errorf("WithImages: image %q: target digest: %w: %w", img.Name, err, errdefs.ErrInvalidArgument)
			}
		}
		o.Images = append(o.Images, imgs...)
		o.ExportOnly = append(o.ExportOnly, "WithImages")
		return nil
	}
}

// WithUnpack (the daemon's Import: client.Import) has the daemon unpack
// each imported image's layers into snapshots, in the snapshotter named
// (the daemon's default when empty), as a pull with unpack does.
// archive.Import only writes blobs and records images: it refuses it.
func WithUnpack(snapshotter string) Opt {
	return func(o *Settings) error {
		o.Unpack = true
		o.Snapshotter = snapshotter
		o.DaemonOnly = append(o.DaemonOnly, "WithUnpack")
		o.ImportOnly = append(o.ImportOnly, "WithUnpack")
		return nil
	}
}
