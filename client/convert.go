package client

import (
	"context"
	"fmt"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/images"
	"github.com/berthrt/berth/images/converter"
)

// Convert writes the image src again with its layers converted by opts
// (another compression, OCI media types, fewer platforms; see package
// converter) and names the result dst, replacing the target of an image
// dst that exists (dst may be src: a conversion in place). The work runs
// here over the content API; a lease keeps the new blobs until the image
// record holds them. The converted layers uncompress to the same tars, so
// the image keeps its chain ID and the snapshots unpacked for src.
func (c *Client) Convert(ctx context.Context, dst, src string, opts ...converter.Opt) (*Image, error) {
	srcImg, err := c.GetImage(ctx, src)
	if err != nil {
		return nil, fmt.Errorf("convert %s: %w", src, err)
	}
	ctx, done, err := c.WithLease(ctx)
	if err != nil {
		return nil, err
	}
	defer done(context.WithoutCancel(ctx))
	target, err := converter.Convert(ctx, c.ContentStore(), srcImg.Target(), opts...)
	if err != nil {
		return nil, fmt.Errorf("convert %s: %w", src, err)
	}
	img := images.Image{Name: dst, Target: target, Labels: srcImg.Labels()}
	created, err := c.ImageService().Create(ctx, img)
	if errdefs.IsAlreadyExists(err) {
		created, err = c.ImageService().Update(ctx, img, "target")
	}
	if err != nil {
		return nil, fmt.Errorf("convert %s: record image %s: %w", src, dst, err)
	}
	return NewImage(c, created), nil
}
