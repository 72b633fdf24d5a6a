package main

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/berthrt/berth/distribution"
	"github.com/berthrt/berth/gc"
	"github.com/berthrt/berth/metrics"
	typesv1 "github.com/berthrt/berth/proto/types/v1"
	"github.com/berthrt/berth/shimapi"
	"github.com/berthrt/berth/supervisor"
)

// daemonMetrics is package metrics wired into berthd when [metrics]
// address is set. A nil *daemonMetrics (metrics off) does nothing, so that
// serve calls it without asking.
type daemonMetrics struct {
	m *metrics.Metrics
	l net.Listener
}

// openMetrics binds the metrics address, so that a bad one fails the
// start; nil when metrics are off.
func openMetrics(cfg *Config, sup *supervisor.Supervisor) (*daemonMetrics, error) {
	if cfg.Metrics.Address == "" {
		return nil, nil
	}
	l, err := metrics.Listen(cfg.Metrics.Address)
	if err != nil {
		return nil, err
	}
	return &daemonMetrics{m: metrics.New(supervisedTasks{sup}, metrics.StatsOptions{}), l: l}, nil
}

// interceptors are the API server's observers of unary calls
// (errdefs.ServerOpts).
func (d *daemonMetrics) interceptors() []ttrpc.UnaryServerInterceptor {
	if d == nil {
		return nil
	}
	return []ttrpc.UnaryServerInterceptor{d.m.Interceptor()}
}

// serveContext is ctx for the API server's Serve, carrying the observer
// of stream calls.
func (d *daemonMetrics) serveContext(ctx context.Context) context.Context {
	if d == nil {
		return ctx
	}
	return d.m.ServeContext(ctx)
}

func (d *daemonMetrics) gcCollected() func(gc.Stats, error) {
	if d == nil {
		return nil
	}
	return d.m.GCCollected
}

func (d *daemonMetrics) pullFetched() distribution.FetchedFunc {
	if d == nil {
		return nil
	}
	return d.m.PullFetched()
}

func (d *daemonMetrics) restored(took time.Duration) {
	if d != nil {
		d.m.Restored(took)
	}
}

// serve serves the endpoint until ctx is done, in the background.
func (d *daemonMetrics) serve(ctx context.Context, log *slog.Logger) {
	if d == nil {
		return
	}
	log.Info("metrics serving", "address", "http://"+d.l.Addr().String()+metrics.Path)
	go func() {
		if err := d.m.Serve(ctx, d.l); err != nil {
			log.Error("metrics endpoint stopped", "error", err)
		}
	}()
}

// supervisedTasks are the supervisor's tasks whose init has not exited
// (an exited one's cgroup is gone).
type supervisedTasks struct{ sup *supervisor.Supervisor }

func (s supervisedTasks) Tasks() []metrics.Task {
	var out []metrics.Task
	for _, sh := range s.sup.All() {
		if _, exited := sh.Exited(); exited {
			continue
		}
		out = append(out, metrics.Task{Namespace: sh.Namespace, ID: sh.ID, Stats: func(ctx context.Context) (*typesv1.Metrics, error) {
			resp, err := sh.Task().Stats(ctx, &shimapi.StatsRequest{Id: sh.ID})
			return resp.GetMetrics(), err
		}})
	}
	return out
}
