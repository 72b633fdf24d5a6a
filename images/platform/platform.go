// Package platform parses and formats the "os/arch[/variant]" platforms
// of image indexes. It is apart from package distribution so that the
// client library and berthctl parse a --platform without linking a
// registry client.
package platform

import (
	"fmt"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/errdefs"
)

// Default is what a pull selects from an index unless told otherwise:
// linux/amd64.
func Default() ocispec.Platform { return ocispec.Platform{OS: "linux", Architecture: "amd64"} }

// Parse parses "os/arch[/variant]" ("linux/amd64", "linux/arm/v7") and
// normalises the usual aliases (x86_64, aarch64, armhf, …). A malformed
// platform is ErrInvalidArgument.
func Parse(s string) (ocispec.Platform, error) {
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
	return Normalize(p), nil
}

// Format is "os/arch[/variant]".
func Format(p ocispec.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// Normalize lowercases p and replaces the aliases of architectures and
// variants by their Go names ("x86_64" is amd64, "armhf" is arm/v7;
// arm64/v8 is arm64).
func Normalize(p ocispec.Platform) ocispec.Platform {
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
