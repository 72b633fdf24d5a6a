package cri

import (
	"context"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/errdefs"
)

// Register serves s's RuntimeService and ImageService on g. Create g with
// ServerOptions, so that error classes become status codes and a panic an
// Internal error.
func (s *Server) Register(g *grpc.Server) {
	runtimeapi.RegisterRuntimeServiceServer(g, s)
	runtimeapi.RegisterImageServiceServer(g, s)
}

// UnaryErrors converts the errors of the CRI's calls to gRPC status
// errors with the code of their class (errdefs), at this one edge.
func UnaryErrors(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	return resp, errdefs.ToTTRPC(err)
}
