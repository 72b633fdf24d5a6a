package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	typesv1 "github.com/berthrt/berth/proto/types/v1"
)

// Task is one container's task as a scrape sees it.
type Task struct {
	Namespace, ID string
	// Stats asks the task's shim for its cgroup metrics.
	Stats func(context.Context) (*typesv1.Metrics, error)
}

// Tasks lists the daemon's tasks.
type Tasks interface {
	Tasks() []Task
}

// StatsOptions bound what a scrape costs the shims; zero fields take the
// defaults.
type StatsOptions struct {
	// MinInterval is the least time between two rounds of Stats calls:
	// scrapes in between are served from the cache.
	MinInterval time.Duration
	// Concurrency is how many shims are asked at once.
	Concurrency int
	// ShimTimeout bounds one shim's answer.
	ShimTimeout time.Duration
}

// Defaults of StatsOptions.
const (
	DefaultMinInterval = 10 * time.Second
	DefaultConcurrency = 4
	DefaultShimTimeout = 2 * time.Second
)

func (o StatsOptions) withDefaults() StatsOptions {
	if o.MinInterval <= 0 {
		o.MinInterval = DefaultMinInterval
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.ShimTimeout <= 0 {
		o.ShimTimeout = DefaultShimTimeout
	}
	return o
}

// sample is one task's metrics at one refresh.
type sample struct {
	ns, id  string
	metrics *typesv1.Metrics
}

// taskCollector serves container metrics from a cache that Collect
// refreshes when it is older than MinInterval.
type taskCollector struct {
	tasks Tasks
	opts  StatsOptions

	mu        sync.Mutex // one refresh at a time; guards the fields below
	refreshed time.Time
	samples   []sample

	refreshSeconds prometheus.Gauge
	errors         prometheus.Counter
}

func newTaskCollector(tasks Tasks, opts StatsOptions) *taskCollector {
	return &taskCollector{
		tasks: tasks,
		opts:  opts.withDefaults(),
		refreshSeconds: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "metrics_stats_refresh_seconds",
			Help: "How long the last round of Stats calls to the shims took.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "metrics_stats_errors_total",
			Help: "Stats calls to shims that failed or timed out.",
		}),
	}
}

// containerMetric is one per-container series: its description and how
// to read it from a task's metrics.
type containerMetric struct {
	desc  *prometheus.Desc
	typ   prometheus.ValueType
	value func(*typesv1.Metrics) float64
	// only, when set, says whether the task's metrics have this one.
	only func(*typesv1.Metrics) bool
}

var containerLabels = []string{"namespace", "container_id"}

func containerDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(namespace, "container", name), help, containerLabels, nil)
}

var containerMetrics = []containerMetric{
	{containerDesc("cpu_usage_seconds_total", "CPU time the container's cgroup used."), prometheus.CounterValue,
		func(m *typesv1.Metrics) float64 { return float64(m.GetCpuUsageNs()) / 1e9 }, nil},
	{containerDesc("cpu_user_seconds_total", "CPU time in user mode."), prometheus.CounterValue,
		func(m *typesv1.Metrics) float64 { return float64(m.GetCpuUserNs()) / 1e9 }, nil},
	{containerDesc("cpu_kernel_seconds_total", "CPU time in kernel mode."), prometheus.CounterValue,
		func(m *typesv1.Metrics) float64 { return float64(m.GetCpuKernelNs()) / 1e9 }, nil},
	{containerDesc("memory_usage_bytes", "Memory the cgroup uses, page cache included."), prometheus.GaugeValue,
		func(m *typesv1.Metrics) float64 { return float64(m.GetMemoryUsageBytes()) }, nil},
	{containerDesc("memory_max_usage_bytes", "The most memory the cgroup used."), prometheus.GaugeValue,
		func(m *typesv1.Metrics) float64 { return float64(m.GetMemoryMaxUsageBytes()) }, nil},
	{containerDesc("memory_rss_bytes", "Anonymous memory of the cgroup."), prometheus.GaugeValue,
		func(m *typesv1.Metrics) float64 { return float64(m.GetMemoryRssBytes()) }, nil},
	{containerDesc("memory_cache_bytes", "Page cache of the cgroup."), prometheus.GaugeValue,
		func(m *typesv1.Metrics) float64 { return float64(m.GetMemoryCacheBytes()) }, nil},
	{containerDesc("memory_limit_bytes", "The cgroup's memory limit; absent when there is none."), prometheus.GaugeValue,
		func(m *typesv1.Metrics) float64 { return float64(m.GetMemoryLimitBytes()) },
		func(m *typesv1.Metrics) bool { return m.GetMemoryLimitBytes() > 0 }},
	{containerDesc("oom_events_total", "Times the cgroup hit its memory limit and the OOM killer ran."), prometheus.CounterValue,
		func(m *typesv1.Metrics) float64 { return float64(m.GetOomEvents()) }, nil},
	{containerDesc("pids", "Processes and threads in the cgroup."), prometheus.GaugeValue,
		func(m *typesv1.Metrics) float64 { return float64(m.GetPidsCurrent()) }, nil},
	{containerDesc("pids_limit", "The cgroup's pids limit; absent when there is none."), prometheus.GaugeValue,
		func(m *typesv1.Metrics) float64 { return float64(m.GetPidsLimit()) },
		func(m *typesv1.Metrics) bool { return m.GetPidsLimit() > 0 }},
	{containerDesc("io_read_bytes_total", "Bytes the cgroup read from block devices."), prometheus.CounterValue,
		func(m *typesv1.Metrics) float64 { return float64(m.GetIoReadBytes()) }, nil},
	{containerDesc("io_write_bytes_total", "Bytes the cgroup wrote to block devices (when they reach the device)."), prometheus.CounterValue,
		func(m *typesv1.Metrics) float64 { return float64(m.GetIoWriteBytes()) }, nil},
	{containerDesc("io_read_ops_total", "Read operations the cgroup issued to block devices."), prometheus.CounterValue,
		func(m *typesv1.Metrics) float64 { return float64(m.GetIoReadOps()) }, nil},
	{containerDesc("io_write_ops_total", "Write operations the cgroup issued to block devices."), prometheus.CounterValue,
		func(m *typesv1.Metrics) float64 { return float64(m.GetIoWriteOps()) }, nil},
}

func (c *taskCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, cm := range containerMetrics {
		ch <- cm.desc
	}
	c.refreshSeconds.Describe(ch)
	c.errors.Describe(ch)
}

func (c *taskCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.current() {
		for _, cm := range containerMetrics {
			if cm.only != nil && !cm.only(s.metrics) {
				continue
			}
			ch <- prometheus.MustNewConstMetric(cm.desc, cm.typ, cm.value(s.metrics), s.ns, s.id)
		}
	}
	c.refreshSeconds.Collect(ch)
	c.errors.Collect(ch)
}

// current returns the cached samples, refreshed first when they are older
// than MinInterval. A scrape that arrives during a refresh waits for it
// and uses its result.
func (c *taskCollector) current() []sample {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.refreshed) < c.opts.MinInterval {
		return c.samples
	}
	start := time.Now()
	c.samples = c.refreshLocked()
	c.refreshed = time.Now()
	c.refreshSeconds.Set(c.refreshed.Sub(start).Seconds())
	return c.samples
}

// refreshLocked asks every task's shim for its metrics, Concurrency at a
// time, each within ShimTimeout.
func (c *taskCollector) refreshLocked() []sample {
	tasks := c.tasks.Tasks()
	out := make([]*typesv1.Metrics, len(tasks))
	sem := make(chan struct{}, c.opts.Concurrency)
	var wg sync.WaitGroup
	for i, t := range tasks {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			ctx, cancel := context.WithTimeout(context.Background(), c.opts.ShimTimeout)
			defer cancel()
			m, err := t.Stats(ctx)
			if err != nil {
				c.errors.Inc()
				return
			}
			out[i] = m
		}()
	}
	wg.Wait()
	samples := make([]sample, 0, len(tasks))
	for i, t := range tasks {
		if out[i] != nil {
			samples = append(samples, sample{ns: t.Namespace, id: t.ID, metrics: out[i]})
		}
	}
	return samples
}
