package cri

import (
	"context"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/errdefs"
	typesv1 "github.com/berthrt/berth/proto/types/v1"
)

// The CRI's pod metrics (ListMetricDescriptors, ListPodSandboxMetrics)
// are the shims' Stats, as for ContainerStats: each running task's cgroup
// (v1 or v2), named as cAdvisor names the same figures where their unit
// fits the CRI's integer values. A pod's own metrics are the sum of its
// sandbox's and its containers' (container label empty, as cAdvisor
// labels a pod's cgroup); a container without a task (created, exited)
// has none.

// metricLabels are the label keys of every metric, in order.
var metricLabels = []string{"container", "pod", "namespace"}

// podMetric is one metric: its descriptor and how a task's figures give
// it.
type podMetric struct {
	name, help string
	typ        runtimeapi.MetricType
	value      func(*typesv1.Metrics) uint64
}

var podMetrics = []podMetric{
	{"container_cpu_usage_nanoseconds_total", "CPU time used, in nanoseconds", runtimeapi.MetricType_COUNTER, (*typesv1.Metrics).GetCpuUsageNs},
	{"container_cpu_user_nanoseconds_total", "CPU time used in user mode, in nanoseconds", runtimeapi.MetricType_COUNTER, (*typesv1.Metrics).GetCpuUserNs},
	{"container_cpu_system_nanoseconds_total", "CPU time used in kernel mode, in nanoseconds", runtimeapi.MetricType_COUNTER, (*typesv1.Metrics).GetCpuKernelNs},
	{"container_memory_usage_bytes", "Memory in use, page cache included, in bytes", runtimeapi.MetricType_GAUGE, (*typesv1.Metrics).GetMemoryUsageBytes},
	{"container_memory_working_set_bytes", "Memory in use less the page cache, in bytes", runtimeapi.MetricType_GAUGE, workingSet},
	{"container_memory_rss", "Anonymous memory, in bytes", runtimeapi.MetricType_GAUGE, (*typesv1.Metrics).GetMemoryRssBytes},
	{"container_memory_cache", "Page cache, in bytes", runtimeapi.MetricType_GAUGE, (*typesv1.Metrics).GetMemoryCacheBytes},
	{"container_memory_max_usage_bytes", "Most memory ever in use, in bytes", runtimeapi.MetricType_GAUGE, (*typesv1.Metrics).GetMemoryMaxUsageBytes},
	{"container_spec_memory_limit_bytes", "Memory limit, in bytes (0: none)", runtimeapi.MetricType_GAUGE, (*typesv1.Metrics).GetMemoryLimitBytes},
	{"container_oom_events_total", "Times the memory limit was hit and the OOM killer ran", runtimeapi.MetricType_COUNTER, (*typesv1.Metrics).GetOomEvents},
	{"container_processes", "Processes and threads in the cgroup", runtimeapi.MetricType_GAUGE, (*typesv1.Metrics).GetPidsCurrent},
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
		resp.Descriptors = append(resp.Descriptors, &runtimeapi.MetricDescriptor{Name: m.name, Help: m.help, LabelKeys: metricLabels})
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
	resp := &runtimeapi.ListPodSandboxMetricsResponse{}
	for _, sb := range pods {
		sb.mu.Lock()
		stopped := sb.rec.Stopped || sb.removed
		sb.mu.Unlock()
		if stopped {
			continue
		}
		pm, err := s.podSandboxMetrics(ctx, sb)
		if err != nil {
			return nil, err
		}
		if pm != nil {
			resp.PodMetrics = append(resp.PodMetrics, pm)
		}
	}
	return resp, nil
}

// podSandboxMetrics reads the metrics of sb's tasks; nil when its sandbox
// task is gone.
func (s *Server) podSandboxMetrics(ctx context.Context, sb *sandbox) (*runtimeapi.PodSandboxMetrics, error) {
	md := sb.config.GetMetadata()
	task, _, err := s.sandboxTask(ctx, sb.rec.ID)
	if errdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	total, err := taskMetrics(ctx, task)
	if err != nil {
		return nil, err
	}
	if total == nil {
		return nil, nil
	}
	pm := &runtimeapi.PodSandboxMetrics{PodSandboxId: sb.rec.ID}
	for _, c := range s.containersOf(sb.rec.ID) {
		m, err := s.runningMetrics(ctx, c.rec.ID)
		if err != nil {
			return nil, err
		}
		if m == nil {
			continue
		}
		addMetrics(total, m)
		pm.ContainerMetrics = append(pm.ContainerMetrics, &runtimeapi.ContainerMetrics{
			ContainerId: c.rec.ID,
			Metrics:     metricValues(m, c.config.GetMetadata().GetName(), md),
		})
	}
	pm.Metrics = metricValues(total, "", md)
	return pm, nil
}

// runningMetrics reads the cgroup metrics of berth container id's task,
// nil when it has none.
func (s *Server) runningMetrics(ctx context.Context, id string) (*client.Metrics, error) {
	ctr, err := s.client.LoadContainer(ctx, id)
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
	return taskMetrics(ctx, task)
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
	return m, nil
}

// addMetrics adds m's figures into total (the limit is the pod's
// sandbox's own: limits do not add).
func addMetrics(total, m *client.Metrics) {
	t, d := total.Data, m.Data
	t.CpuUsageNs += d.GetCpuUsageNs()
	t.CpuUserNs += d.GetCpuUserNs()
	t.CpuKernelNs += d.GetCpuKernelNs()
	t.MemoryUsageBytes += d.GetMemoryUsageBytes()
	t.MemoryMaxUsageBytes += d.GetMemoryMaxUsageBytes()
	t.MemoryRssBytes += d.GetMemoryRssBytes()
	t.MemoryCacheBytes += d.GetMemoryCacheBytes()
	t.OomEvents += d.GetOomEvents()
	t.PidsCurrent += d.GetPidsCurrent()
	if m.Timestamp.After(total.Timestamp) {
		total.Timestamp = m.Timestamp
	}
}

// metricValues is every metric of m, labelled with the container's name
// and its pod's.
func metricValues(m *client.Metrics, container string, pod *runtimeapi.PodSandboxMetadata) []*runtimeapi.Metric {
	ts := m.Timestamp
	if ts.IsZero() {
		ts = time.Now()
	}
	labels := []string{container, pod.GetName(), pod.GetNamespace()}
	out := make([]*runtimeapi.Metric, 0, len(podMetrics))
	for _, pm := range podMetrics {
		out = append(out, &runtimeapi.Metric{
			Name: pm.name, Timestamp: ts.UnixNano(), MetricType: pm.typ, LabelValues: labels,
			Value: &runtimeapi.UInt64Value{Value: pm.value(m.Data)},
		})
	}
	return out
}
