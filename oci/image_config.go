package oci

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthrt/berth/errdefs"
)

// ImageConfigSource is what WithImageConfig needs of an image: its decoded
// config (the client's Image is one).
type ImageConfigSource interface {
	Spec(ctx context.Context) (ocispec.Image, error)
}

// WithImageConfig sets the process from img's config: args (entrypoint
// then cmd), env (the image's, over the spec's default), working
// directory, and user when it is numeric ("uid", "uid:gid"); a user given
// by name is refused (NotImplemented): resolving it needs the image's
// /etc/passwd. Options after it override what it sets.
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
			uid, gid, err := numericUser(cfg.User)
			if err != nil {
				return err
			}
			p.User.UID, p.User.GID = uid, gid
		}
		return nil
	}
}

// numericUser parses "uid" or "uid:gid"; the gid is 0 when left out (as
// for a uid the image's /etc/passwd does not list).
func numericUser(user string) (uint32, uint32, error) {
	u, g, hasGroup := strings.Cut(user, ":")
	uid, err := strconv.ParseUint(u, 10, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("image user %q: only numeric users are supported: %w", user, errdefs.ErrNotImplemented)
	}
	var gid uint64
	if hasGroup {
		n, err := strconv.ParseUint(g, 10, 32)
		if err != nil {
			return 0, 0, fmt.Errorf("image user %q: only numeric groups are supported: %w", user, errdefs.ErrNotImplemented)
		}
		gid = n
	}
	return uint32(uid), uint32(gid), nil
}
