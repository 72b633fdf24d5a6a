package integration

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// criMetricNames are the cAdvisor metrics berth describes: every name the
// kubelet's cAdvisor provider reports for a container but the hugetlb
// ones (no hugetlb controller on these hosts).
var criMetricNames = []string{
	"container_blkio_device_usage_total",
	"container_cpu_cfs_periods_total", "container_cpu_cfs_throttled_periods_total", "container_cpu_cfs_throttled_seconds_total",
	"container_cpu_system_seconds_total", "container_cpu_usage_seconds_total", "container_cpu_user_seconds_total",
	"container_file_descriptors",
	"container_fs_inodes_free", "container_fs_inodes_total", "container_fs_limit_bytes", "container_fs_usage_bytes",
	"container_fs_reads_bytes_total", "container_fs_reads_total", "container_fs_writes_bytes_total", "container_fs_writes_total",
	"container_last_seen",
	"container_memory_cache", "container_memory_failcnt", "container_memory_failures_total", "container_memory_kernel_usage",
	"container_memory_mapped_file", "container_memory_max_usage_bytes", "container_memory_rss", "container_memory_swap",
	"container_memory_usage_bytes", "container_memory_working_set_bytes",
	"container_network_receive_bytes_total", "container_network_receive_errors_total",
	"container_network_receive_packets_dropped_total", "container_network_receive_packets_total",
	"container_network_transmit_bytes_total", "container_network_transmit_errors_total",
	"container_network_transmit_packets_dropped_total", "container_network_transmit_packets_total",
	"container_oom_events_total",
	"container_pressure_cpu_stalled_seconds_total", "container_pressure_cpu_waiting_seconds_total",
	"container_pressure_io_stalled_seconds_total", "container_pressure_io_waiting_seconds_total",
	"container_pressure_memory_stalled_seconds_total", "container_pressure_memory_waiting_seconds_total",
	"container_processes", "container_sockets",
	"container_spec_cpu_period", "container_spec_cpu_quota", "container_spec_cpu_shares",
	"container_spec_memory_limit_bytes", "container_spec_memory_reservation_limit_bytes", "container_spec_memory_swap_limit_bytes",
	"container_start_time_seconds", "container_threads", "container_threads_max", "container_ulimits_soft",
}

// TestCRIPodSandboxMetrics runs a pod whose container holds memory, burns
// CPU under a quota and writes files, and reads the pod's metrics: every
// metric is described, every value carries the described labels, and the
// values are what the container did (CPU time grows, the files are in the
// writable layer's usage, traffic to the pod is counted on its
// interface); the pod's sums are at least its container's.
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
	before := time.Now().Add(-time.Second) // start times have whole seconds
	// Eight MiB held in a shell variable, and a loop that burns CPU, under
	// a quota of half a CPU.
	cr, err := e.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: pod, SandboxConfig: podCfg,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "busy"},
			Image:    &runtimeapi.ImageSpec{Image: e.busybox},
			Command: []string{"sh", "-c",
				`x=$(head -c 8388608 /dev/zero | tr '\0' a); i=0; while :; do i=$((i+1)); done`},
			Linux: &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{
				CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512,
				MemoryLimitInBytes: 256 << 20, MemorySwapLimitInBytes: 256 << 20,
			}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctr := cr.ContainerId
	if _, err := e.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctr}); err != nil {
		t.Fatal(err)
	}
	// Ten files of 64 KiB in the writable layer.
	const files, fileSize = 10, 64 << 10
	if r, err := e.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: ctr, Timeout: 60, Cmd: []string{"sh", "-c",
		`mkdir -p /var/lib/mdt && for i in 1 2 3 4 5 6 7 8 9 10; do head -c 65536 /dev/urandom > /var/lib/mdt/f$i; done; sync`}}); err != nil || r.ExitCode != 0 {
		t.Fatalf("write files: %v %s", err, r.GetStderr())
	}
	// Traffic into the pod: a connection to a closed port is answered with
	// a reset from the pod's own kernel.
	st, err := e.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod})
	if err != nil {
		t.Fatal(err)
	}
	ip := st.GetStatus().GetNetwork().GetIp()
	if conn, err := net.DialTimeout("tcp", net.JoinHostPort(ip, "1"), 10*time.Second); err == nil {
		conn.Close()
		t.Fatalf("port 1 of pod %s answered", ip)
	}

	descs, err := e.rt.ListMetricDescriptors(ctx, &runtimeapi.ListMetricDescriptorsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string][]string{}
	for _, d := range descs.Descriptors {
		if _, dup := labels[d.Name]; dup || d.Help == "" || !slices.Equal(d.LabelKeys[:3], []string{"container", "pod", "namespace"}) {
			t.Errorf("descriptor %v: duplicate, without help, or without the base labels", d)
		}
		labels[d.Name] = d.LabelKeys
	}
	for _, name := range criMetricNames {
		if _, ok := labels[name]; !ok {
			t.Errorf("metric %s not described", name)
		}
	}

	// values maps "name{extra labels}" to the value, checking labels.
	values := func(ms []*runtimeapi.Metric, what, container string) map[string]uint64 {
		out := map[string]uint64{}
		for _, m := range ms {
			keys, ok := labels[m.Name]
			if !ok {
				t.Errorf("%s: metric %s not described", what, m.Name)
				continue
			}
			if len(m.LabelValues) != len(keys) || !slices.Equal(m.LabelValues[:3], []string{container, "metrics", "test"}) {
				t.Errorf("%s: metric %s has labels %v for keys %v", what, m.Name, m.LabelValues, keys)
				continue
			}
			if m.Timestamp == 0 || m.Value == nil {
				t.Errorf("%s: metric %s without time or value", what, m.Name)
			}
			key := m.Name
			if len(m.LabelValues) > 3 {
				key += "{" + strings.Join(m.LabelValues[3:], ",") + "}"
			}
			out[key] = m.Value.GetValue()
		}
		return out
	}
	read := func() (cv, pv map[string]uint64) {
		r, err := e.rt.ListPodSandboxMetrics(ctx, &runtimeapi.ListPodSandboxMetricsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(r.PodMetrics, func(p *runtimeapi.PodSandboxMetrics) bool { return p.PodSandboxId == pod })
		if i < 0 || len(r.PodMetrics[i].ContainerMetrics) != 1 || r.PodMetrics[i].ContainerMetrics[0].ContainerId != ctr {
			t.Fatalf("pod metrics %v: want the pod's with its container's", r.PodMetrics)
		}
		pm := r.PodMetrics[i]
		return values(pm.ContainerMetrics[0].Metrics, "container", "busy"), values(pm.Metrics, "pod", "")
	}
	// CPU time is reported in whole seconds: wait for the first, then for
	// it to grow.
	var cv, pv map[string]uint64
	eventually(t, 3*time.Minute, "the container used a CPU second and holds 8 MiB", func() bool {
		cv, pv = read()
		return cv["container_cpu_usage_seconds_total{total}"] >= 1 && cv["container_memory_usage_bytes"] >= 8<<20
	})
	first := cv["container_cpu_usage_seconds_total{total}"]
	eventually(t, 3*time.Minute, "the container's CPU time grows", func() bool {
		cv, pv = read()
		return cv["container_cpu_usage_seconds_total{total}"] > first
	})
	t.Logf("container: %v", cv)
	t.Logf("pod: %v", pv)

	for _, name := range []string{"container_cpu_user_seconds_total", "container_cpu_cfs_periods_total",
		"container_cpu_cfs_throttled_periods_total", "container_file_descriptors", "container_threads", "container_processes",
		"container_memory_rss", "container_memory_working_set_bytes", "container_memory_failures_total{pgfault,container}",
		"container_ulimits_soft{max_open_files}", "container_fs_inodes_total{" + fsDevice(cv) + "}", "container_fs_limit_bytes{" + fsDevice(cv) + "}"} {
		if cv[name] == 0 {
			t.Errorf("container %s is 0", name)
		}
	}
	// The limits the container was given, read back from its cgroup.
	for name, want := range map[string]uint64{
		"container_spec_cpu_period": 100000, "container_spec_cpu_quota": 50000, "container_spec_cpu_shares": 512,
		"container_spec_memory_limit_bytes": 256 << 20, "container_spec_memory_swap_limit_bytes": 256 << 20,
	} {
		if cv[name] != want {
			t.Errorf("container %s = %d, want %d", name, cv[name], want)
		}
	}
	if dev := fsDevice(cv); cv["container_fs_usage_bytes{"+dev+"}"] < files*fileSize {
		t.Errorf("writable layer usage %d, want at least the %d bytes written", cv["container_fs_usage_bytes{"+dev+"}"], files*fileSize)
	}
	if dev := fsDevice(cv); cv["container_fs_inodes_free{"+dev+"}"] >= cv["container_fs_inodes_total{"+dev+"}"] {
		t.Errorf("free inodes %d of %d", cv["container_fs_inodes_free{"+dev+"}"], cv["container_fs_inodes_total{"+dev+"}"])
	}
	// The writable layer holds the files (and their folders).
	cs, err := e.rt.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: ctr})
	if err != nil {
		t.Fatal(err)
	}
	if n := cs.GetStats().GetWritableLayer().GetInodesUsed().GetValue(); n < files {
		t.Errorf("writable layer inodes %d, want at least %d", n, files)
	}
	// The stats APIs carry the same figures: page faults and swap of the
	// container, the pod's processes and its network.
	if mem := cs.GetStats().GetMemory(); mem.GetPageFaults().GetValue() == 0 || cs.GetStats().GetSwap().GetSwapUsageBytes() == nil {
		t.Errorf("container stats without page faults or swap: %v", cs.GetStats())
	}
	// The container waited for CPU under its quota: the pressure says so,
	// as the metrics do (in whole seconds there).
	if psi := cs.GetStats().GetCpu().GetPsi(); cv["container_pressure_cpu_waiting_seconds_total"] > 0 && psi.GetSome().GetTotal() < uint64(time.Second) {
		t.Errorf("container stats: CPU pressure %v, metrics say %d s", psi, cv["container_pressure_cpu_waiting_seconds_total"])
	}
	ps, err := e.rt.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: pod})
	if err != nil {
		t.Fatal(err)
	}
	// The sandbox's shell and its sleep, and the container's shell.
	if n := ps.GetStats().GetLinux().GetProcess().GetProcessCount().GetValue(); n < 3 {
		t.Errorf("pod stats: %d processes, want at least 3", n)
	}
	if eth0 := ps.GetStats().GetLinux().GetNetwork().GetDefaultInterface(); eth0.GetName() != "eth0" || eth0.GetRxBytes().GetValue() == 0 || eth0.GetTxBytes().GetValue() == 0 {
		t.Errorf("pod stats: default interface %v", eth0)
	}
	for _, name := range []string{"container_start_time_seconds", "container_last_seen"} {
		for what, v := range map[string]map[string]uint64{"container": cv, "pod": pv} {
			if v[name] < uint64(before.Unix()) || v[name] > uint64(time.Now().Unix()+1) {
				t.Errorf("%s %s = %d, not between the test's start and now", what, name, v[name])
			}
		}
	}
	// The pod's interface saw the connection; loopback is left out.
	if pv["container_network_receive_packets_total{eth0}"] == 0 || pv["container_network_transmit_packets_total{eth0}"] == 0 ||
		pv["container_network_receive_bytes_total{eth0}"] == 0 {
		t.Errorf("no traffic on the pod's eth0: %v", pv)
	}
	if _, ok := pv["container_network_receive_packets_total{lo}"]; ok {
		t.Error("loopback reported")
	}
	for _, name := range []string{"container_cpu_usage_seconds_total{total}", "container_memory_usage_bytes", "container_file_descriptors"} {
		if pv[name] < cv[name] {
			t.Errorf("pod %s %d is less than its container's %d", name, pv[name], cv[name])
		}
	}
	if pv["container_processes"] <= cv["container_processes"] {
		t.Errorf("pod processes %d: want the sandbox's and the container's (%d)", pv["container_processes"], cv["container_processes"])
	}
}

// fsDevice is the device label of the container's filesystem metrics.
func fsDevice(cv map[string]uint64) string {
	for k := range cv {
		if dev, ok := strings.CutPrefix(k, "container_fs_limit_bytes{"); ok {
			return strings.TrimSuffix(dev, "}")
		}
	}
	return ""
}
