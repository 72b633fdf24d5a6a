package client

import (
	"context"
	"errors"
	"fmt"

	"github.com/berthrt/berth/images"
	"github.com/berthrt/berth/internal/apiconv"
	transferv1 "github.com/berthrt/berth/proto/transfer/v1"
)

// ImageCheck is what Check found of one image: how much of what it needs
// the daemon's content store holds, or, in Err, why it could not be
// walked (a manifest that does not decode, say). Missing lists at most
// 256 blobs; Required-Present says how many are.
type ImageCheck struct {
	Image images.Image
	images.CheckResult
	Err error
}

// Check has the daemon say how much of each image matching filters (as
// ListImages takes them; none is every image) it holds, as
// `ctr images check` does: for the manifests of linux/amd64, or of the
// platform of WithPlatform, or of every platform with WithAllPlatforms
// (the other RemoteOpts do not apply). Images come in name order.
func (c *Client) Check(ctx context.Context, filters []string, opts ...RemoteOpt) ([]ImageCheck, error) {
	o, err := newRemoteOptions(opts)
	if err != nil {
		return nil, err
	}
	resp, err := transferv1.NewTransferClient(c.api().ttrpc).Check(ctx, &transferv1.CheckRequest{
		Filters: filters, Platforms: o.platforms, AllPlatforms: o.all,
	})
	if err != nil {
		return nil, err
	}
	out := make([]ImageCheck, 0, len(resp.GetImages()))
	for _, ic := range resp.GetImages() {
		img := apiconv.ImageFromProto(ic.GetImage())
		r := ImageCheck{Image: img}
		if msg := ic.GetError(); msg != "" {
			r.Err = fmt.Errorf("image %q: %w", img.Name, errors.New(msg))
		} else {
			r.CheckResult = images.CheckResult{
				Availability: images.Availability(ic.GetAvailability()),
				Required:     int(ic.GetRequired()),
				Present:      int(ic.GetPresent()),
				Size:         ic.GetSize(),
				PresentSize:  ic.GetPresentSize(),
			}
			for _, d := range ic.GetMissing() {
				r.Missing = append(r.Missing, apiconv.DescriptorFromProto(d))
			}
		}
		out = append(out, r)
	}
	return out, nil
}
