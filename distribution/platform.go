package distribution

import (
	"fmt"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/errdefs"
)

// DefaultPlatform is what a pull selects from an index unless told
// otherwise.
func DefaultPlatform() ocispec.Platform { return ocispec.Platform{OS: "linux", Architecture: "amd64"} }

// ParsePlatform parses "os/arch[/variant]" ("linux/amd64",
// "linux/arm/v7") and normalises the usual aliases (x86_64, aarch64,
// armhf, …).
func ParsePlatform(s string) (ocispec.Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return ocispec.Platform{}, fmt.Errorf("platform %.100q: not os/arch[/variant]: %w", s, errdefs.ErrInvalidArgument)
	}
	p := ocispec.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		if parts[2] == "" {
			return ocispec.Platform{}, fmt.Errorf("platform %.100q: empty variant: %w", s, errdefs.ErrInvalidArgument)
		}
		p.Variant = parts[2]
	}
	return normalizePlatform(p), nil
}

// FormatPlatform is "os/arch[/variant]".
func FormatPlatform(p ocispec.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

func normalizePlatform(p ocispec.Platform) ocispec.Platform {
	p.OS = strings.ToLower(p.OS)
	p.Architecture = strings.ToLower(p.Architecture)
	p.Variant = strings.ToLower(p.Variant)
	switch p.Architecture {
	case "x86_64", "x86-64":
		p.Architecture = "amd64"
	case "aarch64":
		p.Architecture = "arm64"
	case "i386", "i686":
		p.Architecture = "386"
	case "armhf":
		p.Architecture, p.Variant = "arm", "v7"
	case "armel":
		p.Architecture, p.Variant = "arm", "v6"
	}
	if p.Architecture == "arm64" && p.Variant == "v8" {
		p.Variant = ""
	}
	return p
}

// matchPlatform reports whether have is a platform of want: the same OS
// and architecture, and the same variant when want names one.
func matchPlatform(want, have ocispec.Platform) bool {
	want, have = normalizePlatform(want), normalizePlatform(have)
	return want.OS == have.OS && want.Architecture == have.Architecture &&
		(want.Variant == "" || want.Variant == have.Variant)
}
