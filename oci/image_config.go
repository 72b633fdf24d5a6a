package oci

import (
	"context"
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ImageConfigSource is what WithImageConfig needs of an image: its decoded
// config (the client's Image is one).
type ImageConfigSource interface {
	Spec(ctx context.Context) (ocispec.Image, error)
}

// WithImageConfig sets the process from img's config: args (entrypoint
// then cmd), env (the image's, over the spec's default), working
// directory, and user (through WithUser: a name is looked up in the
// container's /etc/passwd, which the client lends through
// ContextWithRootFS). Options after it override what it sets.
func WithImageConfig(img ImageConfigSource) SpecOpts {
	return func(ctx context.Context, s *specs.Spec) error {
		spec, err := img.Spec(ctx)
		if err != nil {
			return err
		}
		return WithImageConfigSpec(spec.Config)(ctx, s)
	}
}

// WithImageConfigSpec is WithImageConfig from a config already decoded.
func WithImageConfigSpec(cfg ocispec.ImageConfig) SpecOpts {
	return func(ctx context.Context, s *specs.Spec) error {
		p := ensureProcess(s)
		if args := append(append([]string(nil), cfg.Entrypoint...), cfg.Cmd...); len(args) > 0 {
			p.Args = args
		}
		if err := WithEnv(cfg.Env)(ctx, s); err != nil {
			return fmt.Errorf("image config: %w", err)
		}
		if cfg.WorkingDir != "" {
			if err := WithProcessCwd(cfg.WorkingDir)(ctx, s); err != nil {
				return fmt.Errorf("image config: %w", err)
			}
		}
		if cfg.User != "" {
			if err := WithUser(cfg.User)(ctx, s); err != nil {
				return fmt.Errorf("image config: %w", err)
			}
		}
		return nil
	}
}
