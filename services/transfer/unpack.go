package transfer

import (
	"context"
	"fmt"

	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/apiconv"
	api "github.com/berthrt/berth/proto/transfer/v1"
	"github.com/berthrt/berth/unpack"
)

func (s *service) Unpack(ctx context.Context, req *api.UnpackRequest, stream api.Transfer_UnpackServer) (err error) {
	defer errdefs.StreamCall(ctx, "/berth.services.transfer.v1.Transfer/Unpack").Done(&err)
	return errdefs.ToTTRPC(s.unpackImage(ctx, req, stream))
}

// unpackImage unpacks a local image, as a pull with unpack does after its
// fetch, under a lease of its own.
func (s *service) unpackImage(ctx context.Context, req *api.UnpackRequest, stream api.Transfer_UnpackServer) error {
	ctx, err := streamNamespace(ctx, req.GetNamespace())
	if err != nil {
		return err
	}
	if req.GetImage() == "" {
		return fmt.Errorf("unpack: no image: %w", errdefs.ErrInvalidArgument)
	}
	sn, snName, err := s.unpackTarget(true, req.GetSnapshotter())
	if err != nil {
		return fmt.Errorf("unpack %.200q: %w", req.GetImage(), err)
	}
	img, err := s.Images.Get(ctx, req.GetImage())
	if err != nil {
		return err
	}
	ctx, release, err := s.lease(ctx, "unpack")
	if err != nil {
		return err
	}
	defer release()

	rl := newRelay(func(batch []*api.Progress) error { return stream.Send(&api.UnpackProgress{Progress: batch}) })
	err = s.unpack(ctx, s.Content, img.Target, req.GetPlatforms(), sn, snName, rl.report)
	sendErr := rl.close()
	if err != nil {
		return fmt.Errorf("unpack %s: %w", img.Name, err)
	}
	chainID, err := s.chainID(ctx, img.Target, req.GetPlatforms())
	if err != nil {
		return err
	}
	release() // before the reply: a client that lists leases next sees none
	if sendErr != nil {
		return sendErr
	}
	return stream.Send(&api.UnpackProgress{Image: apiconv.ImageToProto(img), ChainId: chainID, Snapshotter: snName})
}

// chainID is the top chain ID of the manifest of target that unpack
// unpacks for want.
func (s *service) chainID(ctx context.Context, target ocispec.Descriptor, want []string) (string, error) {
	ps, err := parsePlatforms(want)
	if err != nil {
		return "", err
	}
	var m platforms.MatchComparer
	if len(ps) > 0 {
		m = platforms.Only(ps[0])
	}
	img, err := unpack.Resolve(ctx, s.Content, target, m)
	if err != nil {
		return "", err
	}
	return img.ChainID(), nil
}
