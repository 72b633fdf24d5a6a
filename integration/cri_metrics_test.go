package integration

import (
	"context"
	"slices"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestCRIPodSandboxMetrics reads a pod's metrics from its cgroups: every
// metric is described, carries the described labels, a container that
// holds memory and burns CPU shows it, and the pod's figures are at least
// its container's.
func TestCRIPodSandboxMetrics(t *testing.T) {
	e := newCRIEnv(t)
	ctx := e.ctx(t)
	podCfg := e.podConfig(t, "metrics", false)
	pod := e.runPod(t, podCfg)
	t.Cleanup(func() {
		ctx := context.Background()
		e.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod})
		e.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod})
	})
	// Eight MiB held in a shell variable, and a loop that burns CPU.
	ctr := e.startContainer(t, pod, podCfg, "busy", "sh", "-c",
		`x=$(head -c 8388608 /dev/zero | tr '\0' a); i=0; while :; do i=$((i+1)); done`)

	descs, err := e.rt.ListMetricDescriptors(ctx, &runtimeapi.ListMetricDescriptorsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string][]string{}
	for _, d := range descs.Descriptors {
		labels[d.Name] = d.LabelKeys
	}
	for _, name := range []string{"container_cpu_usage_nanoseconds_total", "container_memory_usage_bytes", "container_memory_working_set_bytes", "container_processes"} {
		if _, ok := labels[name]; !ok {
			t.Errorf("metric %s not described: %v", name, descs.Descriptors)
		}
	}
	values := func(ms []*runtimeapi.Metric, what string) map[string]uint64 {
		out := map[string]uint64{}
		for _, m := range ms {
			keys, ok := labels[m.Name]
			if !ok {
				t.Errorf("%s: metric %s not described", what, m.Name)
			}
			if len(m.LabelValues) != len(keys) {
				t.Errorf("%s: metric %s has labels %v for keys %v", what, m.Name, m.LabelValues, keys)
			}
			if m.Timestamp == 0 || m.Value == nil {
				t.Errorf("%s: metric %s without time or value", what, m.Name)
			}
			out[m.Name] = m.Value.GetValue()
		}
		return out
	}
	// Wait until the container holds its memory (the shell builds it first).
	var pm *runtimeapi.PodSandboxMetrics
	eventually(t, time.Minute, "the container holds 8 MiB", func() bool {
		r, err := e.rt.ListPodSandboxMetrics(ctx, &runtimeapi.ListPodSandboxMetricsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(r.PodMetrics, func(p *runtimeapi.PodSandboxMetrics) bool { return p.PodSandboxId == pod })
		if i < 0 || len(r.PodMetrics[i].ContainerMetrics) != 1 {
			return false
		}
		pm = r.PodMetrics[i]
		return values(pm.ContainerMetrics[0].Metrics, "container")["container_memory_usage_bytes"] >= 8<<20
	})
	cm := pm.ContainerMetrics[0]
	if cm.ContainerId != ctr {
		t.Fatalf("container metrics of %s: want %s", cm.ContainerId, ctr)
	}
	cv, pv := values(cm.Metrics, "container"), values(pm.Metrics, "pod")
	if cv["container_cpu_usage_nanoseconds_total"] == 0 {
		t.Errorf("container CPU usage 0")
	}
	if cv["container_processes"] < 1 {
		t.Errorf("container processes %d", cv["container_processes"])
	}
	if got := cm.Metrics[0].LabelValues; !slices.Equal(got, []string{"busy", "metrics", "test"}) {
		t.Errorf("container metric labels %v", got)
	}
	for _, name := range []string{"container_cpu_usage_nanoseconds_total", "container_memory_usage_bytes", "container_processes"} {
		if pv[name] < cv[name] {
			t.Errorf("pod %s %d is less than its container's %d", name, pv[name], cv[name])
		}
	}
	if pv["container_processes"] <= cv["container_processes"] {
		t.Errorf("pod processes %d: want the sandbox's and the container's (%d)", pv["container_processes"], cv["container_processes"])
	}
}
