// Package images serves berth.services.images.v1 over the metadata image
// store, publishing /images/create, /images/update and /images/delete.
package images

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/containerd/ttrpc"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthrt/berth/errdefs"
	api "github.com/berthrt/berth/proto/images/v1"
	"github.com/berthrt/berth/services"
	"github.com/berthrt/berth/storage/metadata"
)

// The topics of image events; their payloads are api.ImageCreate,
// api.ImageUpdate and api.ImageDelete.
const (
	TopicImageCreate = "/images/create"
	TopicImageUpdate = "/images/update"
	TopicImageDelete = "/images/delete"
)

// Collector runs a garbage collection now (metadata.GCScheduler).
type Collector interface {
	Collect(ctx context.Context) (metadata.GCStats, error)
}

// Config is what the service uses.
type Config struct {
	Store     metadata.ImageStore
	Publisher services.Publisher
	// GC serves Delete with sync set.
	GC Collector
}

type service struct{ Config }

// Register serves the images API on srv.
func Register(srv *ttrpc.Server, cfg Config) {
	api.RegisterImagesService(srv, &service{cfg})
}

func (s *service) Get(ctx context.Context, req *api.GetImageRequest) (*api.GetImageResponse, error) {
	img, err := s.Store.Get(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	return &api.GetImageResponse{Image: ToProto(img)}, nil
}

func (s *service) List(ctx context.Context, req *api.ListImagesRequest) (*api.ListImagesResponse, error) {
	imgs, err := s.Store.List(ctx, req.GetFilters()...)
	if err != nil {
		return nil, err
	}
	resp := &api.ListImagesResponse{Images: make([]*api.Image, 0, len(imgs))}
	for _, img := range imgs {
		resp.Images = append(resp.Images, ToProto(img))
	}
	return resp, nil
}

func (s *service) Create(ctx context.Context, req *api.CreateImageRequest) (*api.CreateImageResponse, error) {
	if req.GetImage() == nil {
		return nil, fmt.Errorf("image is required: %w", errdefs.ErrInvalidArgument)
	}
	created, err := s.Store.Create(ctx, FromProto(req.GetImage()))
	if err != nil {
		return nil, err
	}
	s.publish(ctx, TopicImageCreate, &api.ImageCreate{Name: created.Name, Labels: created.Labels})
	return &api.CreateImageResponse{Image: ToProto(created)}, nil
}

func (s *service) Update(ctx context.Context, req *api.UpdateImageRequest) (*api.UpdateImageResponse, error) {
	if req.GetImage() == nil {
		return nil, fmt.Errorf("image is required: %w", errdefs.ErrInvalidArgument)
	}
	updated, err := s.Store.Update(ctx, FromProto(req.GetImage()), req.GetUpdateMask().GetPaths()...)
	if err != nil {
		return nil, err
	}
	s.publish(ctx, TopicImageUpdate, &api.ImageUpdate{Name: updated.Name, Labels: updated.Labels})
	return &api.UpdateImageResponse{Image: ToProto(updated)}, nil
}

func (s *service) Delete(ctx context.Context, req *api.DeleteImageRequest) (*emptypb.Empty, error) {
	if err := s.Store.Delete(ctx, req.GetName()); err != nil {
		return nil, err
	}
	s.publish(ctx, TopicImageDelete, &api.ImageDelete{Name: req.GetName()})
	if req.GetSync() && s.GC != nil {
		if _, err := s.GC.Collect(ctx); err != nil {
			return nil, fmt.Errorf("image %q deleted; garbage collection: %w", req.GetName(), err)
		}
	}
	return &emptypb.Empty{}, nil
}

func (s *service) publish(ctx context.Context, topic string, ev proto.Message) {
	if s.Publisher == nil {
		return
	}
	if err := s.Publisher.Publish(ctx, topic, ev); err != nil {
		slog.WarnContext(ctx, "publish image event", "topic", topic, "error", err)
	}
}

// ToProto converts a stored image to its API form.
func ToProto(img metadata.Image) *api.Image {
	out := &api.Image{
		Name:   img.Name,
		Labels: img.Labels,
		Target: DescriptorToProto(img.Target),
	}
	if !img.CreatedAt.IsZero() {
		out.CreatedAt = timestamppb.New(img.CreatedAt)
	}
	if !img.UpdatedAt.IsZero() {
		out.UpdatedAt = timestamppb.New(img.UpdatedAt)
	}
	return out
}

// FromProto converts an API image to the store's form; the times are left
// for the store to set.
func FromProto(img *api.Image) metadata.Image {
	out := metadata.Image{Name: img.GetName(), Labels: img.GetLabels(), Target: DescriptorFromProto(img.GetTarget())}
	if img.GetCreatedAt() != nil {
		out.CreatedAt = img.GetCreatedAt().AsTime()
	}
	if img.GetUpdatedAt() != nil {
		out.UpdatedAt = img.GetUpdatedAt().AsTime()
	}
	return out
}

// DescriptorToProto converts an OCI descriptor to its API form.
func DescriptorToProto(d ocispec.Descriptor) *api.Descriptor {
	out := &api.Descriptor{
		MediaType:   d.MediaType,
		Digest:      d.Digest.String(),
		Size:        d.Size,
		Annotations: d.Annotations,
		Urls:        d.URLs,
	}
	if p := d.Platform; p != nil {
		out.Platform = &api.Platform{Os: p.OS, Architecture: p.Architecture, Variant: p.Variant, OsVersion: p.OSVersion, OsFeatures: p.OSFeatures}
	}
	return out
}

// DescriptorFromProto converts an API descriptor (nil: the zero one).
func DescriptorFromProto(d *api.Descriptor) ocispec.Descriptor {
	out := ocispec.Descriptor{
		MediaType:   d.GetMediaType(),
		Digest:      digest.Digest(d.GetDigest()),
		Size:        d.GetSize(),
		Annotations: d.GetAnnotations(),
		URLs:        d.GetUrls(),
	}
	if p := d.GetPlatform(); p != nil {
		out.Platform = &ocispec.Platform{OS: p.GetOs(), Architecture: p.GetArchitecture(), Variant: p.GetVariant(), OSVersion: p.GetOsVersion(), OSFeatures: p.GetOsFeatures()}
	}
	return out
}
