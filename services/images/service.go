// Package images serves berth.services.images.v1 over the metadata image
// store, publishing /images/create, /images/update and /images/delete.
package images

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/events/topics"
	"github.com/berthrt/berth/gc"
	"github.com/berthrt/berth/images"
	"github.com/berthrt/berth/internal/apiconv"
	api "github.com/berthrt/berth/proto/images/v1"
	"github.com/berthrt/berth/services"
)

// Collector runs a garbage collection now (metadata.GCScheduler).
type Collector interface {
	Collect(ctx context.Context) (gc.Stats, error)
}

// Config is what the service uses.
type Config struct {
	Store     images.Store
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
	return &api.GetImageResponse{Image: apiconv.ImageToProto(img)}, nil
}

func (s *service) List(ctx context.Context, req *api.ListImagesRequest) (*api.ListImagesResponse, error) {
	imgs, err := s.list(ctx, req)
	if err != nil {
		return nil, err
	}
	resp := &api.ListImagesResponse{Images: imgs}
	if err := services.CheckListReply("images", resp); err != nil {
		return nil, err
	}
	return resp, nil
}

func (s *service) ListStream(ctx context.Context, req *api.ListImagesRequest, stream api.Images_ListStreamServer) (err error) {
	defer errdefs.StreamCall(ctx, "/berth.services.images.v1.Images/ListStream").Done(&err)
	ctx, err = services.StreamNamespace(ctx, req.GetNamespace())
	if err != nil {
		return errdefs.ToTTRPC(err)
	}
	imgs, err := s.list(ctx, req)
	if err != nil {
		return errdefs.ToTTRPC(err)
	}
	return services.SendAll(imgs, func(batch []*api.Image) error {
		return stream.Send(&api.ListImagesResponse{Images: batch})
	})
}

func (s *service) list(ctx context.Context, req *api.ListImagesRequest) ([]*api.Image, error) {
	imgs, err := s.Store.List(ctx, req.GetFilters()...)
	if err != nil {
		return nil, err
	}
	out := make([]*api.Image, 0, len(imgs))
	for _, img := range imgs {
		out = append(out, apiconv.ImageToProto(img))
	}
	return out, nil
}

func (s *service) Create(ctx context.Context, req *api.CreateImageRequest) (*api.CreateImageResponse, error) {
	if req.GetImage() == nil {
		return nil, fmt.Errorf("image is required: %w", errdefs.ErrInvalidArgument)
	}
	created, err := s.Store.Create(ctx, apiconv.ImageFromProto(req.GetImage()))
	if err != nil {
		return nil, err
	}
	s.publish(ctx, topics.ImageCreate, &api.ImageCreate{Name: created.Name, Labels: created.Labels})
	return &api.CreateImageResponse{Image: apiconv.ImageToProto(created)}, nil
}

func (s *service) Update(ctx context.Context, req *api.UpdateImageRequest) (*api.UpdateImageResponse, error) {
	if req.GetImage() == nil {
		return nil, fmt.Errorf("image is required: %w", errdefs.ErrInvalidArgument)
	}
	updated, err := s.Store.Update(ctx, apiconv.ImageFromProto(req.GetImage()), req.GetUpdateMask().GetPaths()...)
	if err != nil {
		return nil, err
	}
	s.publish(ctx, topics.ImageUpdate, &api.ImageUpdate{Name: updated.Name, Labels: updated.Labels})
	return &api.UpdateImageResponse{Image: apiconv.ImageToProto(updated)}, nil
}

func (s *service) Delete(ctx context.Context, req *api.DeleteImageRequest) (*emptypb.Empty, error) {
	if err := s.Store.Delete(ctx, req.GetName()); err != nil {
		return nil, err
	}
	s.publish(ctx, topics.ImageDelete, &api.ImageDelete{Name: req.GetName()})
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
