package apiconv

import (
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/berthrt/berth/gc"
	gcv1 "github.com/berthrt/berth/proto/gc/v1"
)

// GCStatsToProto is the API answer that reports a collection's stats.
func GCStatsToProto(st gc.Stats) *gcv1.CollectResponse {
	return &gcv1.CollectResponse{
		ContentRecords: int64(st.ContentRecords),
		Blobs:          int64(st.Blobs),
		BlobBytes:      st.BlobBytes,
		Ingests:        int64(st.Ingests),
		Leases:         int64(st.Leases),
		Snapshots:      int64(st.Snapshots),
		Duration:       durationpb.New(st.Duration),
	}
}

// GCStatsFromProto is the inverse of GCStatsToProto.
func GCStatsFromProto(resp *gcv1.CollectResponse) gc.Stats {
	return gc.Stats{
		ContentRecords: int(resp.GetContentRecords()),
		Blobs:          int(resp.GetBlobs()),
		BlobBytes:      resp.GetBlobBytes(),
		Ingests:        int(resp.GetIngests()),
		Leases:         int(resp.GetLeases()),
		Snapshots:      int(resp.GetSnapshots()),
		Duration:       resp.GetDuration().AsDuration(),
	}
}
