package client

import (
	"context"
	"fmt"

	"github.com/berthrt/berth/errdefs"
	transferv1 "github.com/berthrt/berth/proto/transfer/v1"
)

// UnpackOpt configures Unpack.
type UnpackOpt func(*unpackOptions)

type unpackOptions struct {
	platform string
	progress func(Progress)
}

// WithUnpackPlatform unpacks the manifest of an index for platform
// ("os/arch[/variant]"); the daemon's default platform otherwise.
func WithUnpackPlatform(platform string) UnpackOpt {
	return func(o *unpackOptions) { o.platform = platform }
}

// WithUnpackProgress calls fn with the report of each layer: "unpacking",
// then "unpacked", or "exists" for one the snapshotter had.
func WithUnpackProgress(fn func(Progress)) UnpackOpt {
	return func(o *unpackOptions) { o.progress = fn }
}

// Unpack has the daemon unpack the local image name into snapshotter (""
// for the daemon's default), as a pull with unpack does, and returns the
// top layer's chain ID: the parent of a container's snapshot. Layers the
// snapshotter has already are skipped.
func (c *Client) Unpack(ctx context.Context, name, snapshotter string, opts ...UnpackOpt) (chainID string, err error) {
	var o unpackOptions
	for _, opt := range opts {
		opt(&o)
	}
	ns, err := c.namespace(ctx)
	if err != nil {
		return "", err
	}
	req := &transferv1.UnpackRequest{Namespace: ns, Image: name, Snapshotter: snapshotter}
	if o.platform != "" {
		req.Platforms = []string{o.platform}
	}
	var last *transferv1.UnpackProgress
	what := fmt.Sprintf("unpack %.200s", name)
	err = c.transfer(ctx, what, func(ctx context.Context, api transferv1.TransferClient) (receiver, error) {
		stream, err := api.Unpack(ctx, req)
		if err != nil {
			return nil, err
		}
		return receiveStream(stream.Recv, func(m *transferv1.UnpackProgress) bool { return m.GetImage() != nil }, &last), nil
	}, o.progress)
	if err != nil {
		return "", err
	}
	if last == nil {
		return "", fmt.Errorf("%s: the daemon's last message has no image: %w", what, errdefs.ErrUnavailable)
	}
	return last.GetChainId(), nil
}
