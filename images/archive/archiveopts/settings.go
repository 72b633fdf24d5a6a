package archiveopts

import (
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/images"
	"github.com/berthrt/berth/images/progress"
)

// Settings is what a list of Opts asks for: Import and Export read it,
// and a caller that passes the options on rather than calling them (the
// client library sends them to the daemon, which makes Opts of them
// again) reads it too.
type Settings struct {
	// Platform is WithPlatform's, nil when not given.
	Platform *ocispec.Platform
	// AllPlatforms is WithAllPlatforms.
	AllPlatforms bool
	// Progress is WithProgress's function, nil when not given.
	Progress progress.Func
	// NamePrefix and IndexName are WithNamePrefix's and WithIndexName's.
	NamePrefix, IndexName string
	// Images are WithImages's.
	Images []images.Image
	// Unpack and Snapshotter are WithUnpack's.
	Unpack      bool
	Snapshotter string
	// ImportOnly, ExportOnly and DaemonOnly name the options given that
	// only Import, only Export, or only the daemon's import take, in the
	// order given; Import and Export refuse the others' options.
	ImportOnly, ExportOnly, DaemonOnly []string
}

// ReadOpts applies opts and returns what they ask for, or the error of
// the first that refuses its argument (or of WithPlatform and
// WithAllPlatforms together).
func ReadOpts(opts ...Opt) (Settings, error) {
	var s Settings
	for _, opt := range opts {
		if err := opt(&s); err != nil {
			return Settings{}, err
		}
	}
	if s.AllPlatforms && s.Platform != nil {
		return Settings{}, fmt.Errorf("WithPlatform and WithAllPlatforms together: %w", errdefs.ErrInvalidArgument)
	}
	return s, nil
}
