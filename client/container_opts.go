package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/oci"
)

// NewContainerOpts sets up the record of a new container before it is
// created.
type NewContainerOpts func(ctx context.Context, c *Client, info *ContainerInfo) error

// UpdateContainerOpts changes the record of a container in
// Container.Update. It is the same type as NewContainerOpts: an option that
// names a field the daemon does not let change (the runtime, the snapshot)
// makes Update fail with ErrInvalidArgument.
type UpdateContainerOpts = NewContainerOpts

// DeleteOpts runs before a container is deleted, with its last record.
type DeleteOpts func(ctx context.Context, c *Client, info ContainerInfo) error

// WithNewSpec generates the container's spec: the default spec for the
// context's namespace and the container's id, changed by opts in order.
// When the container has a snapshot already (WithNewSnapshot came before),
// an option that resolves a user or group name (oci.WithUser,
// oci.WithImageConfig) reads it from the snapshot, which is then mounted
// read-only in a temporary folder while the options run: that needs the
// privileges to mount.
func WithNewSpec(opts ...oci.SpecOpts) NewContainerOpts {
	return func(ctx context.Context, c *Client, info *ContainerInfo) (err error) {
		ns, err := c.namespace(ctx)
		if err != nil {
			return err
		}
		ctx, release := withSpecRootFS(ctx, c, info)
		defer func() { err = errors.Join(err, release()) }()
		s, err := oci.GenerateSpec(ctx, ns, info.ID, opts...)
		if err != nil {
			return err
		}
		return setSpec(info, s)
	}
}

// WithSpec sets the container's spec to s, changed by opts in order (which
// change s itself); names resolve in the snapshot as for WithNewSpec.
func WithSpec(s *specs.Spec, opts ...oci.SpecOpts) NewContainerOpts {
	return func(ctx context.Context, c *Client, info *ContainerInfo) (err error) {
		if s == nil {
			return fmt.Errorf("container %q: nil spec: %w", info.ID, errdefs.ErrInvalidArgument)
		}
		ctx, release := withSpecRootFS(ctx, c, info)
		defer func() { err = errors.Join(err, release()) }()
		for _, o := range opts {
			if err := o(ctx, s); err != nil {
				return err
			}
		}
		return setSpec(info, s)
	}
}

func setSpec(info *ContainerInfo, s *specs.Spec) error {
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("container %q: encode spec: %w: %w", info.ID, errdefs.ErrInvalidArgument, err)
	}
	info.Spec = b
	return nil
}

// WithRuntime names the OCI runtime ("runc", or the absolute path of a
// binary with runc's command line) and its options, which may be nil, an
// *anypb.Any, or any other message (packed into an Any).
func WithRuntime(name string, options proto.Message) NewContainerOpts {
	return func(_ context.Context, _ *Client, info *ContainerInfo) error {
		a, err := toAny(options)
		if err != nil {
			return fmt.Errorf("runtime options: %w", err)
		}
		info.Runtime = RuntimeInfo{Name: name, Options: a}
		return nil
	}
}

// WithContainerLabels sets the container's labels to a copy of labels.
func WithContainerLabels(labels map[string]string) NewContainerOpts {
	return func(_ context.Context, _ *Client, info *ContainerInfo) error {
		info.Labels = maps.Clone(labels)
		return nil
	}
}

// WithImageName records the name of the image the container is made from.
func WithImageName(name string) NewContainerOpts {
	return func(_ context.Context, _ *Client, info *ContainerInfo) error {
		info.Image = name
		return nil
	}
}

// WithContainerExtension stores ext (packed into an Any unless it is one)
// under name among the container's extensions.
func WithContainerExtension(name string, ext proto.Message) NewContainerOpts {
	return func(_ context.Context, _ *Client, info *ContainerInfo) error {
		if name == "" {
			return fmt.Errorf("extension without a name: %w", errdefs.ErrInvalidArgument)
		}
		a, err := toAny(ext)
		if err != nil {
			return fmt.Errorf("extension %q: %w", name, err)
		}
		if a == nil {
			return fmt.Errorf("extension %q: nil message: %w", name, errdefs.ErrInvalidArgument)
		}
		if info.Extensions == nil {
			info.Extensions = map[string]*anypb.Any{}
		}
		info.Extensions[name] = a
		return nil
	}
}

// toAny packs m into an Any; an Any stays as it is, nil stays nil.
func toAny(m proto.Message) (*anypb.Any, error) {
	switch v := m.(type) {
	case nil:
		return nil, nil
	case *anypb.Any:
		return v, nil
	}
	a, err := anypb.New(m)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
	}
	return a, nil
}
