package client

import (
	"context"
	"errors"
	"io"

	"github.com/berthrt/berth/images/archive"
)

// Import reads an OCI image layout or `docker save` archive (a tar, or a
// gzip'd tar) from r, writes its blobs through the daemon's content API
// and records its images, as archive.Import does over ContentStore and
// ImageService. It works under a lease (WithLease: ctx's own when it
// carries one, else a new one deleted when Import returns), so garbage
// collection takes neither half an import nor keeps what a failed one
// left. opts are archive's: WithPlatform, WithAllPlatforms,
// WithNamePrefix, WithIndexName, WithProgress. It returns the images
// created or updated, in the archive's order.
func (c *Client) Import(ctx context.Context, r io.Reader, opts ...archive.Opt) (_ []*Image, err error) {
	ctx, done, err := c.WithLease(ctx)
	if err != nil {
		return nil, err
	}
	defer func() {
		if derr := done(context.WithoutCancel(ctx)); derr != nil {
			err = errors.Join(err, derr)
		}
	}()
	res, err := archive.Import(ctx, c.ContentStore(), c.ImageService(), r, opts...)
	if err != nil {
		return nil, err
	}
	out := make([]*Image, 0, len(res.Images))
	for _, i := range res.Images {
		out = append(out, NewImage(c, i))
	}
	return out, nil
}

// Export writes the images of archive.WithImages (e.g.
// archive.WithImages(img.Metadata())) to w as an OCI image layout tar,
// reading their blobs through the daemon's content API, as
// archive.Export does over ContentStore. It only reads, so it takes no
// lease; an image deleted while it is exported may make it fail with
// ErrNotFound, and what was written to w is then to be thrown away.
func (c *Client) Export(ctx context.Context, w io.Writer, opts ...archive.Opt) error {
	return archive.Export(ctx, c.ContentStore(), w, opts...)
}
