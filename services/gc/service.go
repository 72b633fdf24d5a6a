// Package gc serves berth.services.gc.v1: a garbage collection on request.
package gc

import (
	"context"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/durationpb"

	api "github.com/berthrt/berth/proto/gc/v1"
	"github.com/berthrt/berth/storage/metadata"
)

// Collector runs a garbage collection now (metadata.GCScheduler).
type Collector interface {
	Collect(ctx context.Context) (metadata.GCStats, error)
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
	return &api.CollectResponse{
		ContentRecords: int64(st.ContentRecords),
		Blobs:          int64(st.Blobs),
		BlobBytes:      st.BlobBytes,
		Ingests:        int64(st.Ingests),
		Leases:         int64(st.Leases),
		Snapshots:      int64(st.Snapshots),
		Duration:       durationpb.New(st.Duration),
	}, nil
}
