package archive

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/distribution"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/images"
)

// maxDockerImages bounds the entries of a docker save manifest.json.
const maxDockerImages = 1024

// dockerManifest is one entry of a docker save archive's manifest.json.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// docker converts the entries of a docker save archive's manifest.json
// into Docker schema 2 manifests in the store.
func (im *importer) docker(ctx context.Context) (Result, error) {
	var mfsts []dockerManifest
	if err := json.Unmarshal(im.manifest, &mfsts); err != nil {
		return Result{}, fmt.Errorf("import: manifest.json: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	if len(mfsts) == 0 || len(mfsts) > maxDockerImages {
		return Result{}, fmt.Errorf("import: manifest.json: %d images, not 1 to %d: %w", len(mfsts), maxDockerImages, errdefs.ErrInvalidArgument)
	}
	res := Result{Format: FormatDocker}
	for i, m := range mfsts {
		desc, err := im.convert(ctx, m, fmt.Sprintf("manifest.json entry %d", i))
		if err != nil {
			return Result{}, err
		}
		if len(m.RepoTags) == 0 {
			res.Roots = append(res.Roots, desc)
		}
		for _, tag := range m.RepoTags {
			root := desc
			root.Annotations = map[string]string{images.AnnotationRefName: tag}
			if name, ok := im.dockerName(tag); ok {
				r, err := distribution.ParseRef(name)
				if err != nil {
					return Result{}, fmt.Errorf("import: manifest.json entry %d: RepoTags: %w", i, err)
				}
				root.Annotations[images.AnnotationImageName] = r.String()
			}
			res.Roots = append(res.Roots, root)
		}
	}
	if im.opts.IndexName != "" {
		idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: res.Roots}
		data, err := json.Marshal(idx)
		if err != nil {
			return Result{}, err
		}
		desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromBytes(data), Size: int64(len(data))}
		if err := im.writeManifest(ctx, desc, data, res.Roots); err != nil {
			return Result{}, err
		}
		res.Index = desc
	}
	return res, nil
}

// dockerName is the name a RepoTag gives under WithNamePrefix.
func (im *importer) dockerName(tag string) (string, bool) {
	if im.opts.NamePrefix == "" {
		return tag, true
	}
	if !strings.ContainsAny(tag, "/:@") {
		return im.opts.NamePrefix + ":" + tag, true
	}
	return tag, hasImagePrefix(tag, im.opts.NamePrefix)
}

// convert writes the Docker schema 2 manifest of one manifest.json entry
// and returns its descriptor, with the config's platform.
func (im *importer) convert(ctx context.Context, m dockerManifest, what string) (ocispec.Descriptor, error) {
	cfgEntry, err := im.resolve(m.Config)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("import: %s: Config: %w", what, err)
	}
	cfgDesc := ocispec.Descriptor{MediaType: images.MediaTypeDockerConfig, Digest: cfgEntry.desc.Digest, Size: cfgEntry.desc.Size}
	data, err := images.ReadManifest(ctx, im.store, cfgDesc)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("import: %s: config %.200q: %w", what, m.Config, err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(data, &cfg); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("import: %s: config %.200q: %w: %w", what, m.Config, err, errdefs.ErrInvalidArgument)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return ocispec.Descriptor{}, fmt.Errorf("import: %s: %d layers, but the config has %d diff_ids: %w", what, len(m.Layers), len(cfg.RootFS.DiffIDs), errdefs.ErrInvalidArgument)
	}
	mfst := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: images.MediaTypeDockerManifest,
		Config:    cfgDesc,
		Layers:    make([]ocispec.Descriptor, 0, len(m.Layers)),
	}
	for i, l := range m.Layers {
		e, err := im.resolve(l)
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("import: %s: layer %d: %w", what, i, err)
		}
		mediaType := images.MediaTypeDockerLayer
		switch e.compression {
		case "gzip":
			mediaType = images.MediaTypeDockerLayerGzip
		case "zstd":
			mediaType = images.MediaTypeDockerLayerZstd
		default:
			if e.desc.Digest != cfg.RootFS.DiffIDs[i] {
				return ocispec.Descriptor{}, fmt.Errorf("import: %s: layer %d (%.200q) has digest %s, but the config's diff_id is %s: %w", what, i, l, e.desc.Digest, cfg.RootFS.DiffIDs[i], errdefs.ErrInvalidArgument)
			}
		}
		mfst.Layers = append(mfst.Layers, ocispec.Descriptor{MediaType: mediaType, Digest: e.desc.Digest, Size: e.desc.Size})
	}
	data, err = json.MarshalIndent(mfst, "", "   ")
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	desc := ocispec.Descriptor{MediaType: images.MediaTypeDockerManifest, Digest: digest.FromBytes(data), Size: int64(len(data))}
	if cfg.OS != "" && cfg.Architecture != "" {
		desc.Platform = &ocispec.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant, OSVersion: cfg.OSVersion}
	}
	if err := im.writeManifest(ctx, desc, data, append([]ocispec.Descriptor{mfst.Config}, mfst.Layers...)); err != nil {
		return ocispec.Descriptor{}, err
	}
	return desc, nil
}

// hasImagePrefix reports whether the reference s is in the repository
// prefix, as containerd's `ctr import --base-name` decides it.
func hasImagePrefix(s, prefix string) bool {
	if !strings.HasPrefix(s, prefix) || len(s) == len(prefix) {
		return false
	}
	switch s[len(prefix)] {
	case '/', ':', '@':
		return true
	}
	return false
}
