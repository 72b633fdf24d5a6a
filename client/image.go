package client

import (
	"context"
	"sync"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/berthrt/berth/images"
	"github.com/berthrt/berth/internal/apiconv"
	imagesv1 "github.com/berthrt/berth/proto/images/v1"
	"github.com/berthrt/berth/unpack"
)

// Image is an image of the daemon: a name for a target descriptor. Pull
// and unpack extend it.
type Image struct {
	client *Client
	i      images.Image

	mu       sync.Mutex    // guards resolved
	resolved *unpack.Image // manifest and config, once read (see resolve)
}

// NewImage returns the Image of a record, as the client's calls do.
func NewImage(c *Client, i images.Image) *Image {
	return &Image{client: c, i: i}
}

// Name is the image's reference.
func (img *Image) Name() string { return img.i.Name }

// Target is the descriptor of the image's index or manifest.
func (img *Image) Target() ocispec.Descriptor { return img.i.Target }

// Labels are the image's labels.
func (img *Image) Labels() map[string]string { return img.i.Labels }

// Metadata is the whole record.
func (img *Image) Metadata() images.Image { return img.i }

// ImageService returns the daemon's images as a images.Store, the
// interface of the daemon's own store. Calls act in the namespace of their
// context, else the client's default.
func (c *Client) ImageService() images.Store {
	return &remoteImages{client: c, api: imagesv1.NewImagesClient(c.api().ttrpc)}
}

// GetImage returns the image name.
func (c *Client) GetImage(ctx context.Context, name string) (*Image, error) {
	i, err := c.ImageService().Get(ctx, name)
	if err != nil {
		return nil, err
	}
	return NewImage(c, i), nil
}

// ListImages returns the images matching any of filters (all when none):
// fields name, target.digest, target.mediatype, target.size,
// labels.<key>, annotations.<key>.
func (c *Client) ListImages(ctx context.Context, filters ...string) ([]*Image, error) {
	list, err := c.ImageService().List(ctx, filters...)
	if err != nil {
		return nil, err
	}
	out := make([]*Image, 0, len(list))
	for _, i := range list {
		out = append(out, NewImage(c, i))
	}
	return out, nil
}

// DeleteImageOpt configures DeleteImage.
type DeleteImageOpt func(*imagesv1.DeleteImageRequest)

// SynchronousDelete makes DeleteImage return only once a garbage
// collection that followed the delete has finished.
func SynchronousDelete() DeleteImageOpt {
	return func(r *imagesv1.DeleteImageRequest) { r.Sync = true }
}

// DeleteImage deletes the image name; its content goes with the next
// garbage collection (at once with SynchronousDelete).
func (c *Client) DeleteImage(ctx context.Context, name string, opts ...DeleteImageOpt) error {
	req := &imagesv1.DeleteImageRequest{Name: name}
	for _, opt := range opts {
		opt(req)
	}
	_, err := imagesv1.NewImagesClient(c.api().ttrpc).Delete(ctx, req)
	return err
}

// remoteImages is a images.Store over the images API.
type remoteImages struct {
	client *Client
	api    imagesv1.ImagesClient
}

func (r *remoteImages) Get(ctx context.Context, name string) (images.Image, error) {
	resp, err := r.api.Get(ctx, &imagesv1.GetImageRequest{Name: name})
	if err != nil {
		return images.Image{}, err
	}
	return apiconv.ImageFromProto(resp.GetImage()), nil
}

func (r *remoteImages) List(ctx context.Context, filters ...string) ([]images.Image, error) {
	ns, err := r.client.namespace(ctx)
	if err != nil {
		return nil, err
	}
	stream, err := r.api.ListStream(ctx, &imagesv1.ListImagesRequest{Filters: filters, Namespace: ns})
	if err != nil {
		return nil, streamError("list images", err)
	}
	imgs, err := receiveAll("list images", stream.Recv, (*imagesv1.ListImagesResponse).GetImages)
	if err != nil {
		return nil, err
	}
	out := make([]images.Image, 0, len(imgs))
	for _, i := range imgs {
		out = append(out, apiconv.ImageFromProto(i))
	}
	return out, nil
}

func (r *remoteImages) Create(ctx context.Context, img images.Image) (images.Image, error) {
	resp, err := r.api.Create(ctx, &imagesv1.CreateImageRequest{Image: apiconv.ImageToProto(img)})
	if err != nil {
		return images.Image{}, err
	}
	return apiconv.ImageFromProto(resp.GetImage()), nil
}

func (r *remoteImages) Update(ctx context.Context, img images.Image, fieldpaths ...string) (images.Image, error) {
	resp, err := r.api.Update(ctx, &imagesv1.UpdateImageRequest{Image: apiconv.ImageToProto(img), UpdateMask: &fieldmaskpb.FieldMask{Paths: fieldpaths}})
	if err != nil {
		return images.Image{}, err
	}
	return apiconv.ImageFromProto(resp.GetImage()), nil
}

func (r *remoteImages) Delete(ctx context.Context, name string) error {
	_, err := r.api.Delete(ctx, &imagesv1.DeleteImageRequest{Name: name})
	return err
}
