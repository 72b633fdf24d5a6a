// Package leases serves berth.services.leases.v1 over the metadata lease
// manager.
package leases

import (
	"context"
	"fmt"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthrt/berth/errdefs"
	api "github.com/berthrt/berth/proto/leases/v1"
	"github.com/berthrt/berth/storage/metadata"
)

// Collector runs a garbage collection now (metadata.GCScheduler).
type Collector interface {
	Collect(ctx context.Context) (metadata.GCStats, error)
}

// Config is what the service uses.
type Config struct {
	Leases metadata.LeaseManager
	// GC serves Delete with sync set.
	GC Collector
}

type service struct{ Config }

// Register serves the leases API on srv.
func Register(srv *ttrpc.Server, cfg Config) {
	api.RegisterLeasesService(srv, &service{cfg})
}

func (s *service) Create(ctx context.Context, req *api.CreateRequest) (*api.CreateResponse, error) {
	l, err := s.Leases.Create(ctx, metadata.Lease{ID: req.GetId(), Labels: req.GetLabels()})
	if err != nil {
		return nil, err
	}
	return &api.CreateResponse{Lease: ToProto(l)}, nil
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
	ls, err := s.Leases.List(ctx, req.GetFilters()...)
	if err != nil {
		return nil, err
	}
	resp := &api.ListResponse{Leases: make([]*api.Lease, 0, len(ls))}
	for _, l := range ls {
		resp.Leases = append(resp.Leases, ToProto(l))
	}
	return resp, nil
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

func resource(r *api.Resource) (metadata.LeaseResource, error) {
	if r == nil {
		return metadata.LeaseResource{}, fmt.Errorf("resource is required: %w", errdefs.ErrInvalidArgument)
	}
	return metadata.LeaseResource{Type: r.GetType(), ID: r.GetId()}, nil
}

// ToProto converts a stored lease to its API form.
func ToProto(l metadata.Lease) *api.Lease {
	out := &api.Lease{Id: l.ID, Labels: l.Labels}
	if !l.CreatedAt.IsZero() {
		out.CreatedAt = timestamppb.New(l.CreatedAt)
	}
	return out
}
