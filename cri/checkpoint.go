package cri

import (
	"context"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/errdefs"
)

// CheckpointContainer is not supported: berth has no checkpoint/restore
// (it would need criu, whose own check fails on these machines' kernels).
// The kubelet's forensic checkpoint API then reports that plainly rather
// than an unclear failure half-way.
func (s *Server) CheckpointContainer(_ context.Context, req *runtimeapi.CheckpointContainerRequest) (*runtimeapi.CheckpointContainerResponse, error) {
	if _, err := s.containerByID(req.GetContainerId()); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("checkpoint of container %s: berth does not checkpoint containers (no criu support): %w", req.GetContainerId(), errdefs.ErrNotImplemented)
}
