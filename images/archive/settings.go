package archive

import (
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/distribution"
	"github.com/berthrt/berth/storage/metadata"
)

// Settings is what a list of Opts asks for, for a caller that passes
// them on rather than calling Import or Export: the client library sends
// them to the daemon, which makes Opts of them again.
type Settings struct {
	// Platform is WithPlatform's, nil when not given.
	Platform *ocispec.Platform
	// AllPlatforms is WithAllPlatforms.
	AllPlatforms bool
	// Progress is WithProgress's function, nil when not given.
	Progress distribution.ProgressFunc
	// NamePrefix and IndexName are WithNamePrefix's and WithIndexName's.
	NamePrefix, IndexName string
	// Images are WithImages's.
	Images []metadata.Image
	// Unpack and Snapshotter are WithUnpack's.
	Unpack      bool
	Snapshotter string
}

// ReadOpts applies opts and returns what they ask for, or the error of
// the first that refuses its argument (or of WithPlatform and
// WithAllPlatforms together).
func ReadOpts(opts ...Opt) (Settings, error) {
	o, err := newOptions(opts)
	if err != nil {
		return Settings{}, err
	}
	return Settings{
		Platform:     o.platform,
		AllPlatforms: o.all,
		Progress:     o.progress,
		NamePrefix:   o.namePrefix,
		IndexName:    o.indexName,
		Images:       o.images,
		Unpack:       o.unpack,
		Snapshotter:  o.snapshotter,
	}, nil
}
