package archive

import (
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/images"
	"github.com/berthrt/berth/images/archive/archiveopts"
	"github.com/berthrt/berth/images/progress"
)

// The options live in package archiveopts, which clients use without
// linking this package; see there for each.
type (
	// Opt sets an option of Import or Export.
	Opt = archiveopts.Opt
	// Settings is what a list of Opts asks for.
	Settings = archiveopts.Settings
)

// ReadOpts applies opts and returns what they ask for
// (archiveopts.ReadOpts).
func ReadOpts(opts ...Opt) (Settings, error) { return archiveopts.ReadOpts(opts...) }

// WithPlatform is archiveopts.WithPlatform (Import and Export).
func WithPlatform(p ocispec.Platform) Opt { return archiveopts.WithPlatform(p) }

// WithAllPlatforms is archiveopts.WithAllPlatforms (Import and Export).
func WithAllPlatforms() Opt { return archiveopts.WithAllPlatforms() }

// WithProgress is archiveopts.WithProgress (Import and Export).
func WithProgress(fn progress.Func) Opt { return archiveopts.WithProgress(fn) }

// WithNamePrefix is archiveopts.WithNamePrefix (Import).
func WithNamePrefix(prefix string) Opt { return archiveopts.WithNamePrefix(prefix) }

// WithIndexName is archiveopts.WithIndexName (Import).
func WithIndexName(name string) Opt { return archiveopts.WithIndexName(name) }

// WithImages is archiveopts.WithImages (Export).
func WithImages(imgs ...images.Image) Opt { return archiveopts.WithImages(imgs...) }

// WithUnpack is archiveopts.WithUnpack (the daemon's Import only).
func WithUnpack(snapshotter string) Opt { return archiveopts.WithUnpack(snapshotter) }

// options are the Settings of one Import or Export.
type options struct{ Settings }

func newOptions(opts []Opt) (*options, error) {
	s, err := archiveopts.ReadOpts(opts...)
	if err != nil {
		return nil, err
	}
	return &options{s}, nil
}

// matcher is the platform matcher the options ask for; nil for all.
func (o *options) matcher() platforms.MatchComparer {
	if o.AllPlatforms {
		return nil
	}
	p := images.DefaultPlatform()
	if o.Platform != nil {
		p = *o.Platform
	}
	return platforms.OnlyStrict(p)
}

func (o *options) platformString() string {
	if o.AllPlatforms {
		return "all platforms"
	}
	if o.Platform != nil {
		return platforms.Format(*o.Platform)
	}
	return platforms.Format(images.DefaultPlatform())
}

func (o *options) report(p progress.Progress) {
	if o.Progress != nil {
		o.Progress(p)
	}
}
