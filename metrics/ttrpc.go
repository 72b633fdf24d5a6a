package metrics

import (
	"context"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/status"

	"github.com/berthrt/berth/errdefs"
)

// Interceptor counts every unary call and observes its latency; it goes
// to errdefs.ServerOpts, which puts it outside the panic recovery, so that
// a panicking call is counted as the Internal error it becomes.
func (m *Metrics) Interceptor() ttrpc.UnaryServerInterceptor { return m.intercept }

// ServeContext returns ctx, for the ttrpc server's Serve, carrying the
// observer that counts stream calls as Interceptor counts unary ones
// (errdefs.WithStreamObserver).
func (m *Metrics) ServeContext(ctx context.Context) context.Context {
	return errdefs.WithStreamObserver(ctx, m.observe)
}

func (m *Metrics) intercept(ctx context.Context, unmarshal ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, method ttrpc.Method) (_ any, err error) {
	start := time.Now()
	defer func() { m.observe(info.FullMethod, time.Since(start), err) }()
	return method(ctx, unmarshal)
}

// observe counts one call of fullMethod that took took and ended with err.
func (m *Metrics) observe(fullMethod string, took time.Duration, err error) {
	service, name := splitMethod(fullMethod)
	m.apiDuration.WithLabelValues(service, name).Observe(took.Seconds())
	m.apiCalls.WithLabelValues(service, name, status.Code(errdefs.ToTTRPC(err)).String()).Inc()
}
