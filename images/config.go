package images

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/errdefs"
)

// IsConfig reports whether mediaType is an OCI or Docker image config.
func IsConfig(mediaType string) bool {
	return mediaType == ocispec.MediaTypeImageConfig || mediaType == MediaTypeDockerConfig
}

// CheckConfig reads the image config desc from p and checks that it is a
// JSON object that decodes as an image config (ocispec.Image: a string
// where a string belongs, a list where a list does) and is at most
// MaxManifestSize bytes. A config that is not is ErrInvalidArgument: it
// would make unpacking and running the image fail later, far from its
// cause. A descriptor of another media type (an artifact's config) is
// not read.
func CheckConfig(ctx context.Context, p content.Provider, desc ocispec.Descriptor) error {
	if !IsConfig(desc.MediaType) {
		return nil
	}
	if desc.Size > MaxManifestSize {
		return fmt.Errorf("config %s: %d bytes, more than %d: %w", desc.Digest, desc.Size, MaxManifestSize, errdefs.ErrInvalidArgument)
	}
	data, err := content.ReadBlob(ctx, p, desc)
	if err != nil {
		return fmt.Errorf("config %s: %w", desc.Digest, err)
	}
	if !bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("{")) {
		return fmt.Errorf("config %s: not a JSON object: %w", desc.Digest, errdefs.ErrInvalidArgument)
	}
	var img ocispec.Image
	if err := json.Unmarshal(data, &img); err != nil {
		return fmt.Errorf("config %s: not an image config: %w: %w", desc.Digest, err, errdefs.ErrInvalidArgument)
	}
	return nil
}
