package spantrace

import (
	"context"

	"github.com/containerd/ttrpc"
)

// ServerOpts returns the ttrpc server options that trace every unary call
// as a span named "rpc /SERVICE/METHOD"; none when tracing is off.
func ServerOpts() []ttrpc.ServerOpt {
	if out == nil {
		return nil
	}
	return []ttrpc.ServerOpt{ttrpc.WithChainUnaryServerInterceptor(serverSpan)}
}

func serverSpan(ctx context.Context, unmarshal ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, method ttrpc.Method) (any, error) {
	defer Start("rpc " + info.FullMethod).End()
	return method(ctx, unmarshal)
}
