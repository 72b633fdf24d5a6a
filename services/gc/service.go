// Package gc serves berth.services.gc.v1: a garbage collection on request.
package gc

import (
	"context"

	"github.com/containerd/ttrpc"

	"github.com/berthrt/berth/gc"
	"github.com/berthrt/berth/internal/apiconv"
	api "github.com/berthrt/berth/proto/gc/v1"
)

// Collector runs a garbage collection now (metadata.GCScheduler).
type Collector interface {
	Collect(ctx context.Context) (gc.Stats, error)
}

type service struct{ gc Collector }

// Register serves the GC API on srv.
func Register(srv *ttrpc.Server, gc Collector) {
	api.RegisterGCService(srv, &service{gc: gc})
}

func (s *service) Collect(ctx context.Context, _ *api.CollectRequest) (*api.CollectResponse, error) {
	st, err := s.gc.Collect(ctx)
	if err != nil {
		return nil, err
	}
	return apiconv.GCStatsToProto(st), nil
}
