package images

import (
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types of Docker's image format (Docker Image Manifest V2, Schema
// 2), which OCI's mirrors.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	// MediaTypeDockerLayer is an uncompressed layer, as docker save writes
	// them.
	MediaTypeDockerLayer         = "application/vnd.docker.image.rootfs.diff.tar"
	MediaTypeDockerLayerGzip     = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeDockerLayerZstd     = "application/vnd.docker.image.rootfs.diff.tar.zstd"
	MediaTypeDockerForeignLayer  = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	mediaTypeDockerSchema1       = "application/vnd.docker.distribution.manifest.v1+json"
	mediaTypeDockerSchema1Signed = "application/vnd.docker.distribution.manifest.v1+prettyjws"
)

// Annotations on the entries of an OCI layout's index.json.
const (
	// AnnotationImageName is the full name of the image an entry is, as
	// containerd writes it ("docker.io/library/busybox:latest").
	AnnotationImageName = "io.containerd.image.name"
	// AnnotationRefName is OCI's name of an entry: usually a tag
	// ("latest"), sometimes a whole reference.
	AnnotationRefName = ocispec.AnnotationRefName
)

// MaxManifestSize bounds a manifest, an index or an image config, which
// are read into memory.
const MaxManifestSize = 4 << 20

// IsIndex reports whether mediaType is an OCI index or a Docker manifest
// list.
func IsIndex(mediaType string) bool {
	return mediaType == ocispec.MediaTypeImageIndex || mediaType == MediaTypeDockerManifestList
}

// IsManifest reports whether mediaType is an OCI or Docker schema 2
// image manifest.
func IsManifest(mediaType string) bool {
	return mediaType == ocispec.MediaTypeImageManifest || mediaType == MediaTypeDockerManifest
}

// IsSchema1 reports whether mediaType is Docker's schema 1 manifest,
// which berth refuses.
func IsSchema1(mediaType string) bool {
	return mediaType == mediaTypeDockerSchema1 || mediaType == mediaTypeDockerSchema1Signed
}

// DefaultPlatform is the platform taken from an index unless a caller
// asks for another: linux/amd64, as package distribution pulls.
func DefaultPlatform() ocispec.Platform {
	return ocispec.Platform{OS: "linux", Architecture: "amd64"}
}

// DefaultMatcher matches DefaultPlatform strictly.
func DefaultMatcher() platforms.MatchComparer { return platforms.OnlyStrict(DefaultPlatform()) }
