package metrics

import (
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/berthrt/berth/distribution"
	"github.com/berthrt/berth/gc"
)

// Path is where the endpoint serves the metrics.
const Path = "/v1/metrics"

const namespace = "berth"

// Metrics holds the daemon's collectors; its methods are safe for
// concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	apiCalls    *prometheus.CounterVec
	apiDuration *prometheus.HistogramVec
	restore     prometheus.Gauge
	gcRuns      *prometheus.CounterVec
	gcRemoved   *prometheus.CounterVec
	gcBytes     prometheus.Counter
	gcDuration  prometheus.Histogram
	pull        *pullBytes
}

// New returns the metrics of a daemon whose tasks are tasks, with the Go
// runtime and process collectors registered.
func New(tasks Tasks, opts StatsOptions) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		apiCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "api_calls_total",
			Help: "Calls to the daemon's ttrpc API by service, method and status code.",
		}, []string{"service", "method", "code"}),
		apiDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "api_call_duration_seconds",
			Help:    "Latency of the daemon's ttrpc API calls by service and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"service", "method"}),
		restore: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "restore_duration_seconds",
			Help: "How long reconnecting to the shims of the previous daemon took at start.",
		}),
		gcRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "gc_runs_total",
			Help: "Garbage collections by result (ok, error).",
		}, []string{"result"}),
		gcRemoved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "gc_removed_total",
			Help: "What garbage collections removed, by kind: blobs, content records, ingests, leases, snapshots.",
		}, []string{"kind"}),
		gcBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "gc_removed_blob_bytes_total",
			Help: "Bytes of the blobs garbage collections removed.",
		}),
		gcDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "gc_duration_seconds",
			Help:    "How long garbage collections took.",
			Buckets: prometheus.ExponentialBuckets(.001, 4, 10),
		}),
		pull: newPullBytes(),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.apiCalls, m.apiDuration, m.restore, m.gcRuns, m.gcRemoved, m.gcBytes, m.gcDuration, m.pull.counter,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Name: "shims",
			Help: "Tasks the daemon supervises, each with its shim.",
		}, func() float64 { return float64(len(tasks.Tasks())) }),
		newTaskCollector(tasks, opts),
	)
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		// Scrapes beyond this wait: they would share one stats
		// refresh anyway.
		MaxRequestsInFlight: 4,
	})
}

// Restored records how long the restore of shims took.
func (m *Metrics) Restored(d time.Duration) { m.restore.Set(d.Seconds()) }

// GCCollected counts one garbage collection (metadata.GCSchedulerConfig's
// Collected).
func (m *Metrics) GCCollected(stats gc.Stats, err error) {
	if err != nil {
		m.gcRuns.WithLabelValues("error").Inc()
	} else {
		m.gcRuns.WithLabelValues("ok").Inc()
	}
	for kind, n := range map[string]int{
		"blobs": stats.Blobs, "content_records": stats.ContentRecords, "ingests": stats.Ingests,
		"leases": stats.Leases, "snapshots": stats.Snapshots,
	} {
		m.gcRemoved.WithLabelValues(kind).Add(float64(n))
	}
	m.gcBytes.Add(float64(stats.BlobBytes))
	m.gcDuration.Observe(stats.Duration.Seconds())
}

// PullFetched counts the bytes pulls read from registries
// (distribution.ResolverOptions' Fetched).
func (m *Metrics) PullFetched() distribution.FetchedFunc { return m.pull.fetched }

// splitMethod splits a ttrpc full method, "/pkg.Service/Method".
func splitMethod(full string) (service, method string) {
	service, method, ok := strings.Cut(strings.TrimPrefix(full, "/"), "/")
	if !ok {
		return "unknown", full
	}
	return service, method
}
