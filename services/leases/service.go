// Package leases serves berth.services.leases.v1 over the metadata lease
// manager.
package leases

import (
	"context"
	"fmt"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/gc"
	"github.com/berthrt/berth/internal/apiconv"
	"github.com/berthrt/berth/leases"
	api "github.com/berthrt/berth/proto/leases/v1"
	"github.com/berthrt/berth/services"
)

// Collector runs a garbage collection now (metadata.GCScheduler).
type Collector interface {
	Collect(ctx context.Context) (gc.Stats, error)
}

// Config is what the service uses.
type Config struct {
	Leases leases.Manager
	// GC serves Delete with sync set.
	GC Collector
}

type service struct{ Config }

// Register serves the leases API on srv.
func Register(srv *ttrpc.Server, cfg Config) {
	api.RegisterLeasesService(srv, &service{cfg})
}

func (s *service) Create(ctx context.Context, req *api.CreateRequest) (*api.CreateResponse, error) {
	l, err := s.Leases.Create(ctx, leases.Lease{ID: req.GetId(), Labels: req.GetLabels()})
	if err != nil {
		return nil, err
	}
	return &api.CreateResponse{Lease: apiconv.LeaseToProto(l)}, nil
}

func (s *service) Delete(ctx context.Context, req *api.DeleteRequest) (*emptypb.Empty, error) {
	if err := s.Leases.Delete(ctx, req.GetId()); err != nil {
		return nil, err
	}
	if req.GetSync() && s.GC != nil {
		if _, err := s.GC.Collect(ctx); err != nil {
			return nil, fmt.Errorf("lease %q deleted; garbage collection: %w", req.GetId(), err)
		}
	}
	return &emptypb.Empty{}, nil
}

func (s *service) List(ctx context.Context, req *api.ListRequest) (*api.ListResponse, error) {
	ls, err := s.list(ctx, req)
	if err != nil {
		return nil, err
	}
	resp := &api.ListResponse{Leases: ls}
	if err := services.CheckListReply("leases", resp); err != nil {
		return nil, err
	}
	return resp, nil
}

func (s *service) ListStream(ctx context.Context, req *api.ListRequest, stream api.Leases_ListStreamServer) (err error) {
	defer errdefs.StreamCall(ctx, "/berth.services.leases.v1.Leases/ListStream").Done(&err)
	ctx, err = services.StreamNamespace(ctx, req.GetNamespace())
	if err != nil {
		return errdefs.ToTTRPC(err)
	}
	ls, err := s.list(ctx, req)
	if err != nil {
		return errdefs.ToTTRPC(err)
	}
	return services.SendAll(ls, func(batch []*api.Lease) error {
		return stream.Send(&api.ListResponse{Leases: batch})
	})
}

func (s *service) list(ctx context.Context, req *api.ListRequest) ([]*api.Lease, error) {
	ls, err := s.Leases.List(ctx, req.GetFilters()...)
	if err != nil {
		return nil, err
	}
	out := make([]*api.Lease, 0, len(ls))
	for _, l := range ls {
		out = append(out, apiconv.LeaseToProto(l))
	}
	return out, nil
}

func (s *service) AddResource(ctx context.Context, req *api.AddResourceRequest) (*emptypb.Empty, error) {
	r, err := resource(req.GetResource())
	if err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, s.Leases.AddResource(ctx, req.GetId(), r)
}

func (s *service) DeleteResource(ctx context.Context, req *api.DeleteResourceRequest) (*emptypb.Empty, error) {
	r, err := resource(req.GetResource())
	if err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, s.Leases.DeleteResource(ctx, req.GetId(), r)
}

func (s *service) ListResources(ctx context.Context, req *api.ListResourcesRequest) (*api.ListResourcesResponse, error) {
	rs, err := s.Leases.ListResources(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	resp := &api.ListResourcesResponse{Resources: make([]*api.Resource, 0, len(rs))}
	for _, r := range rs {
		resp.Resources = append(resp.Resources, &api.Resource{Id: r.ID, Type: r.Type})
	}
	return resp, nil
}

func resource(r *api.Resource) (leases.Resource, error) {
	if r == nil {
		return leases.Resource{}, fmt.Errorf("resource is required: %w", errdefs.ErrInvalidArgument)
	}
	return apiconv.ResourceFromProto(r), nil
}
