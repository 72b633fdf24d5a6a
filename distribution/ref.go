package distribution

import (
	"fmt"

	"github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"

	"github.com/berthrt/berth/errdefs"
)

// Ref is an image reference in its normalised form: the registry's
// domain, the repository path in it, and a tag, a digest or both (the
// digest pins; the tag is then only a name).
type Ref struct {
	// Domain is the registry, as the reference names it:
	// "docker.io", "host:5000".
	Domain string
	// Path is the repository in the registry: "library/busybox".
	Path string
	// Tag is the tag, "" when the reference has only a digest.
	Tag string
	// Digest is the pinned digest, "" when the reference has only a tag.
	Digest digest.Digest
}

// ParseRef parses and normalises an image reference the way docker and
// containerd do (with github.com/distribution/reference): a name without
// a domain is on docker.io, a docker.io name without a path is under
// library/, and a reference without a tag or digest gets the tag
// "latest". So "busybox" is "docker.io/library/busybox:latest". A
// malformed reference is ErrInvalidArgument.
func ParseRef(s string) (Ref, error) {
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return Ref{}, fmt.Errorf("image reference %.200q: %w: %w", s, err, errdefs.ErrInvalidArgument)
	}
	named = reference.TagNameOnly(named)
	r := Ref{Domain: reference.Domain(named), Path: reference.Path(named)}
	if t, ok := named.(reference.Tagged); ok {
		r.Tag = t.Tag()
	}
	if d, ok := named.(reference.Digested); ok {
		r.Digest = d.Digest()
		if err := r.Digest.Validate(); err != nil {
			return Ref{}, fmt.Errorf("image reference %.200q: %w: %w", s, err, errdefs.ErrInvalidArgument)
		}
	}
	return r, nil
}

// Name is the repository's full name: "docker.io/library/busybox".
func (r Ref) Name() string { return r.Domain + "/" + r.Path }

// Object is what the reference selects in the repository: the digest
// when it has one, the tag otherwise.
func (r Ref) Object() string {
	if r.Digest != "" {
		return r.Digest.String()
	}
	return r.Tag
}

// String is the normalised reference:
// "docker.io/library/busybox:latest", "host:5000/a/b@sha256:…".
func (r Ref) String() string {
	s := r.Name()
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest.String()
	}
	return s
}

// WithDigest returns r pinned to dgst.
func (r Ref) WithDigest(dgst digest.Digest) Ref {
	r.Digest = dgst
	return r
}
