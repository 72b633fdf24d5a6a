package cri

import (
	"context"
	"strings"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/errdefs"
	typesv1 "github.com/berthrt/berth/proto/types/v1"
)

// The CRI's pod metrics (ListMetricDescriptors, ListPodSandboxMetrics)
// carry cAdvisor's metric names, labels and units, so that a kubelet can
// serve them as its /metrics/cadvisor: the kubelet passes each value on as
// it is, so a *_seconds metric is in whole seconds (the CRI's values are
// integers) and a *_bytes one in bytes.
//
// Where the figures come from:
//   - a container's cgroup (CPU, CFS throttling, memory, pids, descriptors,
//     block I/O, pressure, and the limits it was given), as its shim reads it
//     (task/internal/cgroup); a container without a task (created, exited)
//     has none;
//   - the filesystem of its writable layer: the snapshot's usage and the
//     statfs of the filesystem that holds the snapshots;
//   - the pod's network namespace (/proc/thread-self/net/dev read inside
//     it; a pod with the host's network has no figures of its own).
//
// A pod's own metrics (container label empty, as cAdvisor labels a pod's
// cgroup) are the sums of its sandbox's and its containers' figures where a
// sum means the pod's use (CPU time, memory, processes, ...), plus the
// network, which only the pod has. Limits, throttling, pressure and the
// filesystem are per container only: they do not add up.
//
// What this host cannot give is not reported rather than made up: the
// hugetlb metrics (no hugetlb controller is mounted on these hosts; the
// spec's optional list), PSI where the kernel has none or the container
// has no v2 cgroup, container_spec_cpu_quota for a container without a
// quota (as cAdvisor), and block I/O of devices the kernel did not count
// (cgroup v1 on Linux 6 counts only devices with a throttle rule).

// baseLabels are the label keys every metric starts with: the
// container's name ("" for the pod's own), the pod's name and namespace.
var baseLabels = []string{"container", "pod", "namespace"}

// metricScope says at which levels a metric is reported.
type metricScope uint8

const (
	// perContainer: each container's own figures.
	perContainer metricScope = 1 << iota
	// podSum: the pod's, as the sum of its sandbox's and containers'.
	podSum
	// podOwn: the pod's, from the pod itself.
	podOwn
)

// sample is one value of a metric with the values of its own labels
// (those after baseLabels). The value reported is value/per (per 0: 1),
// so that a pod's sum adds nanoseconds before they become seconds.
type sample struct {
	labels []string
	value  uint64
	per    uint64
}

// metricSource is what one container's or one pod's samples are computed
// from.
type metricSource struct {
	cg      *typesv1.Metrics // the cgroup's; never nil (empty for a pod's own)
	seen    time.Time        // when the figures were read
	started time.Time        // zero when unknown
	fs      *fsFigures       // the writable layer's filesystem; nil for none
	net     []netDev         // the pod's interfaces
}

// podMetric is one metric: its descriptor and how a source gives it.
type podMetric struct {
	name, help string
	typ        runtimeapi.MetricType
	labels     []string // label keys after baseLabels
	scope      metricScope
	samples    func(*metricSource) []sample
}

const (
	gauge   = runtimeapi.MetricType_GAUGE
	counter = runtimeapi.MetricType_COUNTER
)

// one is a metric of one unlabelled value of the cgroup's figures.
func one(value func(*typesv1.Metrics) uint64) func(*metricSource) []sample {
	return func(src *metricSource) []sample { return []sample{{value: value(src.cg)}} }
}

// seconds is one unlabelled value of nanoseconds, in whole seconds.
func seconds(ns func(*typesv1.Metrics) uint64) func(*metricSource) []sample {
	return func(src *metricSource) []sample { return []sample{{value: ns(src.cg), per: uint64(time.Second)}} }
}

// pressure is the stall time of one resource in whole seconds, some or
// full; none where the kernel keeps no pressure for the cgroup.
func pressure(p func(*typesv1.Metrics) *typesv1.Pressure, full bool) func(*metricSource) []sample {
	return func(src *metricSource) []sample {
		pr := p(src.cg)
		if pr == nil {
			return nil
		}
		us := pr.GetSomeUs()
		if full {
			us = pr.GetFullUs()
		}
		return []sample{{value: us, per: uint64(time.Second / time.Microsecond)}}
	}
}

// perDevice is one sample per block device the cgroup did I/O on,
// labelled with the device's name.
func perDevice(value func(*typesv1.BlockIO) uint64) func(*metricSource) []sample {
	return func(src *metricSource) []sample {
		var out []sample
		for _, io := range src.cg.GetIoDevices() {
			out = append(out, sample{labels: []string{blockDeviceName(io.GetMajor(), io.GetMinor())}, value: value(io)})
		}
		return out
	}
}

// perInterface is one sample per network interface of the pod.
func perInterface(value func(*netDev) uint64) func(*metricSource) []sample {
	return func(src *metricSource) []sample {
		out := make([]sample, 0, len(src.net))
		for i := range src.net {
			out = append(out, sample{labels: []string{src.net[i].name}, value: value(&src.net[i])})
		}
		return out
	}
}

// filesystem is one sample of the writable layer's filesystem, labelled
// with its device; none when it could not be read.
func filesystem(value func(*fsFigures) (uint64, bool)) func(*metricSource) []sample {
	return func(src *metricSource) []sample {
		if src.fs == nil {
			return nil
		}
		v, ok := value(src.fs)
		if !ok {
			return nil
		}
		return []sample{{labels: []string{src.fs.device}, value: v}}
	}
}

// unixSeconds is one value of a time in seconds since the epoch; none
// when it is unknown.
func unixSeconds(t func(*metricSource) time.Time) func(*metricSource) []sample {
	return func(src *metricSource) []sample {
		if v := t(src); !v.IsZero() {
			return []sample{{value: uint64(v.Unix())}}
		}
		return nil
	}
}

var podMetrics = []podMetric{
	// CPU.
	{"container_cpu_usage_seconds_total", "Cumulative CPU time consumed, in seconds", counter, []string{"cpu"}, perContainer | podSum,
		func(src *metricSource) []sample {
			return []sample{{labels: []string{"total"}, value: src.cg.GetCpuUsageNs(), per: uint64(time.Second)}}
		}},
	{"container_cpu_user_seconds_total", "Cumulative CPU time consumed in user mode, in seconds", counter, nil, perContainer | podSum, seconds((*typesv1.Metrics).GetCpuUserNs)},
	{"container_cpu_system_seconds_total", "Cumulative CPU time consumed in kernel mode, in seconds", counter, nil, perContainer | podSum, seconds((*typesv1.Metrics).GetCpuKernelNs)},
	{"container_cpu_cfs_periods_total", "Number of elapsed CFS enforcement periods", counter, nil, perContainer, one((*typesv1.Metrics).GetCpuPeriods)},
	{"container_cpu_cfs_throttled_periods_total", "Number of CFS enforcement periods in which the container was throttled", counter, nil, perContainer, one((*typesv1.Metrics).GetCpuThrottledPeriods)},
	{"container_cpu_cfs_throttled_seconds_total", "Total time the container was throttled, in seconds", counter, nil, perContainer, seconds((*typesv1.Metrics).GetCpuThrottledNs)},
	{"container_spec_cpu_period", "CPU CFS period of the container, in microseconds", gauge, nil, perContainer, one((*typesv1.Metrics).GetCpuPeriodUs)},
	{"container_spec_cpu_quota", "CPU CFS quota of the container, in microseconds per period (absent without a quota)", gauge, nil, perContainer,
		func(src *metricSource) []sample {
			if q := src.cg.GetCpuQuotaUs(); q > 0 {
				return []sample{{value: q}}
			}
			return nil
		}},
	{"container_spec_cpu_shares", "CPU shares of the container", gauge, nil, perContainer, one((*typesv1.Metrics).GetCpuShares)},

	// Memory.
	{"container_memory_usage_bytes", "Current memory usage, page cache included, in bytes", gauge, nil, perContainer | podSum, one((*typesv1.Metrics).GetMemoryUsageBytes)},
	{"container_memory_working_set_bytes", "Current working set (usage less the reclaimable page cache), in bytes", gauge, nil, perContainer | podSum, one(workingSet)},
	{"container_memory_rss", "Size of the anonymous memory (RSS), in bytes", gauge, nil, perContainer | podSum, one((*typesv1.Metrics).GetMemoryRssBytes)},
	{"container_memory_cache", "Page cache memory, in bytes", gauge, nil, perContainer | podSum, one((*typesv1.Metrics).GetMemoryCacheBytes)},
	{"container_memory_swap", "Swap usage, in bytes", gauge, nil, perContainer | podSum, one((*typesv1.Metrics).GetMemorySwapBytes)},
	{"container_memory_kernel_usage", "Kernel memory charged to the container, in bytes", gauge, nil, perContainer | podSum, one((*typesv1.Metrics).GetMemoryKernelBytes)},
	{"container_memory_mapped_file", "Size of the memory-mapped files, in bytes", gauge, nil, perContainer | podSum, one((*typesv1.Metrics).GetMemoryMappedFileBytes)},
	{"container_memory_max_usage_bytes", "Maximum memory usage recorded, in bytes", gauge, nil, perContainer, one((*typesv1.Metrics).GetMemoryMaxUsageBytes)},
	{"container_memory_failcnt", "Number of times the memory usage hit the limit", counter, nil, perContainer, one((*typesv1.Metrics).GetMemoryFailcnt)},
	{"container_memory_failures_total", "Cumulative count of page faults (failure_type pgfault: all, pgmajfault: major)", counter, []string{"failure_type", "scope"}, perContainer,
		func(src *metricSource) []sample {
			// The counts include the cgroup's descendants; a container's
			// cgroup has none, so they are its own ("container") and its
			// hierarchy's at once.
			all, major := src.cg.GetMemoryPgfault(), src.cg.GetMemoryPgmajfault()
			return []sample{
				{labels: []string{"pgfault", "container"}, value: all},
				{labels: []string{"pgmajfault", "container"}, value: major},
				{labels: []string{"pgfault", "hierarchy"}, value: all},
				{labels: []string{"pgmajfault", "hierarchy"}, value: major},
			}
		}},
	{"container_oom_events_total", "Count of out-of-memory kills in the container", counter, nil, perContainer | podSum, one((*typesv1.Metrics).GetOomEvents)},
	{"container_spec_memory_limit_bytes", "Memory limit of the container, in bytes (0: none)", gauge, nil, perContainer, one((*typesv1.Metrics).GetMemoryLimitBytes)},
	{"container_spec_memory_swap_limit_bytes", "Memory plus swap limit of the container, in bytes (0: none)", gauge, nil, perContainer, one((*typesv1.Metrics).GetMemorySwapLimitBytes)},
	{"container_spec_memory_reservation_limit_bytes", "Memory reservation (soft limit) of the container, in bytes (0: none)", gauge, nil, perContainer, one((*typesv1.Metrics).GetMemoryReservationBytes)},

	// Processes.
	{"container_processes", "Number of processes in the container", gauge, nil, perContainer | podSum, one((*typesv1.Metrics).GetProcesses)},
	{"container_threads", "Number of threads in the container", gauge, nil, perContainer | podSum, one((*typesv1.Metrics).GetPidsCurrent)},
	{"container_threads_max", "Maximum number of threads allowed in the container (0: no limit)", gauge, nil, perContainer, one((*typesv1.Metrics).GetPidsLimit)},
	{"container_file_descriptors", "Number of open file descriptors of the container's processes", gauge, nil, perContainer | podSum, one((*typesv1.Metrics).GetFileDescriptors)},
	{"container_sockets", "Number of open sockets of the container's processes", gauge, nil, perContainer | podSum, one((*typesv1.Metrics).GetSockets)},
	{"container_ulimits_soft", "Soft ulimit of the container's init process (0: unlimited)", gauge, []string{"ulimit"}, perContainer,
		func(src *metricSource) []sample {
			return []sample{{labels: []string{"max_open_files"}, value: src.cg.GetNofileSoftLimit()}}
		}},

	// Pressure stall information.
	{"container_pressure_cpu_waiting_seconds_total", "Total time some tasks waited for CPU, in seconds", counter, nil, perContainer, pressure((*typesv1.Metrics).GetCpuPressure, false)},
	{"container_pressure_cpu_stalled_seconds_total", "Total time all tasks were stalled on CPU, in seconds", counter, nil, perContainer, pressure((*typesv1.Metrics).GetCpuPressure, true)},
	{"container_pressure_memory_waiting_seconds_total", "Total time some tasks waited for memory, in seconds", counter, nil, perContainer, pressure((*typesv1.Metrics).GetMemoryPressure, false)},
	{"container_pressure_memory_stalled_seconds_total", "Total time all tasks were stalled on memory, in seconds", counter, nil, perContainer, pressure((*typesv1.Metrics).GetMemoryPressure, true)},
	{"container_pressure_io_waiting_seconds_total", "Total time some tasks waited for I/O, in seconds", counter, nil, perContainer, pressure((*typesv1.Metrics).GetIoPressure, false)},
	{"container_pressure_io_stalled_seconds_total", "Total time all tasks were stalled on I/O, in seconds", counter, nil, perContainer, pressure((*typesv1.Metrics).GetIoPressure, true)},

	// Block I/O.
	{"container_blkio_device_usage_total", "Bytes transferred to and from block devices", counter, []string{"device", "major", "minor", "operation"}, perContainer,
		func(src *metricSource) []sample {
			var out []sample
			for _, io := range src.cg.GetIoDevices() {
				dev, major, minor := blockDeviceName(io.GetMajor(), io.GetMinor()), itoa(io.GetMajor()), itoa(io.GetMinor())
				out = append(out,
					sample{labels: []string{dev, major, minor, "Read"}, value: io.GetReadBytes()},
					sample{labels: []string{dev, major, minor, "Write"}, value: io.GetWriteBytes()})
			}
			return out
		}},
	{"container_fs_reads_bytes_total", "Cumulative count of bytes read", counter, []string{"device"}, perContainer, perDevice((*typesv1.BlockIO).GetReadBytes)},
	{"container_fs_reads_total", "Cumulative count of reads completed", counter, []string{"device"}, perContainer, perDevice((*typesv1.BlockIO).GetReadOps)},
	{"container_fs_writes_bytes_total", "Cumulative count of bytes written", counter, []string{"device"}, perContainer, perDevice((*typesv1.BlockIO).GetWriteBytes)},
	{"container_fs_writes_total", "Cumulative count of writes completed", counter, []string{"device"}, perContainer, perDevice((*typesv1.BlockIO).GetWriteOps)},

	// The writable layer's filesystem.
	{"container_fs_usage_bytes", "Bytes used by the container's writable layer", gauge, []string{"device"}, perContainer,
		filesystem(func(f *fsFigures) (uint64, bool) { return f.usedBytes, f.usageKnown })},
	{"container_fs_limit_bytes", "Bytes the filesystem of the container's writable layer can hold", gauge, []string{"device"}, perContainer,
		filesystem(func(f *fsFigures) (uint64, bool) { return f.capacityBytes, true })},
	{"container_fs_inodes_total", "Number of inodes of the filesystem of the container's writable layer", gauge, []string{"device"}, perContainer,
		filesystem(func(f *fsFigures) (uint64, bool) { return f.inodes, true })},
	{"container_fs_inodes_free", "Number of free inodes of the filesystem of the container's writable layer", gauge, []string{"device"}, perContainer,
		filesystem(func(f *fsFigures) (uint64, bool) { return f.inodesFree, true })},

	// The pod's network.
	{"container_network_receive_bytes_total", "Cumulative count of bytes received", counter, []string{"interface"}, podOwn, perInterface(func(d *netDev) uint64 { return d.rxBytes })},
	{"container_network_receive_packets_total", "Cumulative count of packets received", counter, []string{"interface"}, podOwn, perInterface(func(d *netDev) uint64 { return d.rxPackets })},
	{"container_network_receive_errors_total", "Cumulative count of errors encountered while receiving", counter, []string{"interface"}, podOwn, perInterface(func(d *netDev) uint64 { return d.rxErrors })},
	{"container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving", counter, []string{"interface"}, podOwn, perInterface(func(d *netDev) uint64 { return d.rxDropped })},
	{"container_network_transmit_bytes_total", "Cumulative count of bytes transmitted", counter, []string{"interface"}, podOwn, perInterface(func(d *netDev) uint64 { return d.txBytes })},
	{"container_network_transmit_packets_total", "Cumulative count of packets transmitted", counter, []string{"interface"}, podOwn, perInterface(func(d *netDev) uint64 { return d.txPackets })},
	{"container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting", counter, []string{"interface"}, podOwn, perInterface(func(d *netDev) uint64 { return d.txErrors })},
	{"container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting", counter, []string{"interface"}, podOwn, perInterface(func(d *netDev) uint64 { return d.txDropped })},

	// Times.
	{"container_start_time_seconds", "Start time of the container since the Unix epoch, in seconds", gauge, nil, perContainer | podOwn,
		unixSeconds(func(src *metricSource) time.Time { return src.started })},
	{"container_last_seen", "Last time the container was seen by the runtime, in seconds since the Unix epoch", gauge, nil, perContainer | podOwn,
		unixSeconds(func(src *metricSource) time.Time { return src.seen })},
}

// workingSet is the usage less the page cache, which the kernel can
// reclaim (as ContainerStats reports it).
func workingSet(d *typesv1.Metrics) uint64 {
	ws := d.GetMemoryUsageBytes()
	if c := d.GetMemoryCacheBytes(); c < ws {
		ws -= c
	}
	return ws
}

// ListMetricDescriptors describes the metrics ListPodSandboxMetrics
// reports.
func (s *Server) ListMetricDescriptors(context.Context, *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
	resp := &runtimeapi.ListMetricDescriptorsResponse{}
	for _, m := range podMetrics {
		resp.Descriptors = append(resp.Descriptors, &runtimeapi.MetricDescriptor{
			Name: m.name, Help: m.help, LabelKeys: append(append([]string{}, baseLabels...), m.labels...),
		})
	}
	return resp, nil
}

// ListPodSandboxMetrics reports the metrics of every ready pod and of its
// running containers.
func (s *Server) ListPodSandboxMetrics(ctx context.Context, _ *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
	ctx = nsContext(ctx)
	s.mu.Lock()
	pods := make([]*sandbox, 0, len(s.sandboxes))
	for _, sb := range s.sandboxes {
		pods = append(pods, sb)
	}
	s.mu.Unlock()
	fs := s.snapshotFilesystem()
	resp := &runtimeapi.ListPodSandboxMetricsResponse{}
	for _, sb := range pods {
		sb.mu.Lock()
		stopped := sb.rec.Stopped || sb.removed
		sb.mu.Unlock()
		if stopped {
			continue
		}
		pm, err := s.podSandboxMetrics(ctx, sb, fs)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			// One shim that does not answer costs its pod's metrics, not
			// every pod's: the kubelet scrapes them all at once.
			s.log.Warn("pod metrics", "pod", sb.rec.ID, "error", err)
			continue
		}
		if pm != nil {
			resp.PodMetrics = append(resp.PodMetrics, pm)
		}
	}
	return resp, nil
}

// podSandboxMetrics reads the metrics of sb and its running containers;
// nil when its sandbox task is gone. fs is the snapshots' filesystem (nil
// when unreadable).
func (s *Server) podSandboxMetrics(ctx context.Context, sb *sandbox, fs *fsFigures) (*runtimeapi.PodSandboxMetrics, error) {
	md := sb.config.GetMetadata()
	task, _, err := s.sandboxTask(ctx, sb.rec.ID)
	if errdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	sbm, err := taskMetrics(ctx, task)
	if err != nil {
		return nil, err
	}
	if sbm == nil {
		return nil, nil
	}
	// The pod starts within RunPodSandbox, which records its creation.
	pod := &metricSource{cg: &typesv1.Metrics{}, seen: sbm.Timestamp, started: sb.rec.CreatedAt}
	if sb.netns != nil {
		if pod.net, err = podNetDevs(sb.netns); err != nil {
			// Stopped meanwhile, most likely: the pod has no network
			// figures this time, the rest stands.
			s.log.Debug("pod network metrics", "pod", sb.rec.ID, "error", err)
		}
	}
	members := []*metricSource{{cg: sbm.Data, seen: sbm.Timestamp}}
	pm := &runtimeapi.PodSandboxMetrics{PodSandboxId: sb.rec.ID}
	for _, c := range s.containersOf(sb.rec.ID) {
		src, err := s.containerMetricSource(ctx, c, fs)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			s.log.Warn("container metrics", "container", c.rec.ID, "error", err)
			continue
		}
		if src == nil {
			continue
		}
		members = append(members, src)
		pm.ContainerMetrics = append(pm.ContainerMetrics, &runtimeapi.ContainerMetrics{
			ContainerId: c.rec.ID,
			Metrics:     metricValues(perContainer, []*metricSource{src}, c.config.GetMetadata().GetName(), md),
		})
	}
	pm.Metrics = append(metricValues(podOwn, []*metricSource{pod}, "", md), metricValues(podSum, members, "", md)...)
	return pm, nil
}

// containerMetricSource reads what the metrics of c come from; nil when
// it has no running task.
func (s *Server) containerMetricSource(ctx context.Context, c *container, fs *fsFigures) (*metricSource, error) {
	ctr, err := s.client.LoadContainer(ctx, c.rec.ID)
	if errdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	task, err := ctr.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	m, err := taskMetrics(ctx, task)
	if err != nil || m == nil {
		return nil, err
	}
	c.mu.Lock()
	started := c.rec.StartedAt
	c.mu.Unlock()
	src := &metricSource{cg: m.Data, seen: m.Timestamp, started: started}
	if fs != nil {
		layer := *fs
		if info, err := ctr.Info(ctx); err == nil && info.SnapshotKey != "" {
			if u, err := s.client.SnapshotService(info.Snapshotter).Usage(ctx, info.SnapshotKey); err == nil {
				layer.usedBytes, layer.usageKnown = uint64(u.Size), true
			} else {
				s.log.Debug("writable layer usage", "container", c.rec.ID, "error", err)
			}
		}
		src.fs = &layer
	}
	return src, nil
}

// taskMetrics reads a task's metrics; nil when the task went meanwhile.
func taskMetrics(ctx context.Context, task client.Task) (*client.Metrics, error) {
	m, err := task.Metrics(ctx)
	if errdefs.IsNotFound(err) || errdefs.IsFailedPrecondition(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if m.Data == nil {
		m.Data = &typesv1.Metrics{}
	}
	if m.Timestamp.IsZero() {
		m.Timestamp = time.Now()
	}
	return m, nil
}

// metricValues is every metric of the given scope over srcs (summed, when
// there are several, per label values), labelled with the container's
// name and its pod's. Each value bears the time its sources were read
// (the latest of them).
func metricValues(scope metricScope, srcs []*metricSource, container string, pod *runtimeapi.PodSandboxMetadata) []*runtimeapi.Metric {
	var seen time.Time
	for _, src := range srcs {
		if src.seen.After(seen) {
			seen = src.seen
		}
	}
	base := []string{container, pod.GetName(), pod.GetNamespace()}
	var out []*runtimeapi.Metric
	for _, pm := range podMetrics {
		if pm.scope&scope == 0 {
			continue
		}
		var order []string
		sums := map[string]*sample{}
		for _, src := range srcs {
			for _, smp := range pm.samples(src) {
				key := strings.Join(smp.labels, "\x00")
				if sum, ok := sums[key]; ok {
					sum.value += smp.value
					continue
				}
				sums[key] = &sample{labels: smp.labels, value: smp.value, per: max(smp.per, 1)}
				order = append(order, key)
			}
		}
		for _, key := range order {
			smp := sums[key]
			out = append(out, &runtimeapi.Metric{
				Name: pm.name, Timestamp: seen.UnixNano(), MetricType: pm.typ,
				LabelValues: append(append([]string{}, base...), smp.labels...),
				Value:       &runtimeapi.UInt64Value{Value: smp.value / smp.per},
			})
		}
	}
	return out
}
