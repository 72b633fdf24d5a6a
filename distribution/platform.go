package distribution

import (
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/images/platform"
)

// DefaultPlatform is what a pull selects from an index unless told
// otherwise (platform.Default).
func DefaultPlatform() ocispec.Platform { return platform.Default() }

// ParsePlatform parses "os/arch[/variant]" (platform.Parse, which
// clients use without linking this package).
func ParsePlatform(s string) (ocispec.Platform, error) { return platform.Parse(s) }

// FormatPlatform is "os/arch[/variant]" (platform.Format).
func FormatPlatform(p ocispec.Platform) string { return platform.Format(p) }

// matchPlatform reports whether have is a platform of want: the same OS
// and architecture, and the same variant when want names one.
func matchPlatform(want, have ocispec.Platform) bool {
	want, have = platform.Normalize(want), platform.Normalize(have)
	return want.OS == have.OS && want.Architecture == have.Architecture &&
		(want.Variant == "" || want.Variant == have.Variant)
}
