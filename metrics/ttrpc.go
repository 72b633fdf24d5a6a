package metrics

import (
	"context"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/status"

	"github.com/berthrt/berth/errdefs"
)

// ServerOpts returns the ttrpc server options that count every unary call
// and observe its latency. It sits inside the error interceptor, so it
// sees error classes and names them by their status code.
func (m *Metrics) ServerOpts() []ttrpc.ServerOpt {
	return []ttrpc.ServerOpt{ttrpc.WithChainUnaryServerInterceptor(m.intercept)}
}

func (m *Metrics) intercept(ctx context.Context, unmarshal ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, method ttrpc.Method) (any, error) {
	start := time.Now()
	resp, err := method(ctx, unmarshal)
	service, name := splitMethod(info.FullMethod)
	m.apiDuration.WithLabelValues(service, name).Observe(time.Since(start).Seconds())
	m.apiCalls.WithLabelValues(service, name, status.Code(errdefs.ToTTRPC(err)).String()).Inc()
	return resp, err
}
