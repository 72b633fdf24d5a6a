package cri

import (
	"slices"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	typesv1 "github.com/berthrt/berth/proto/types/v1"
)

func TestParseNetDev(t *testing.T) {
	data := "Inter-|   Receive                                                |  Transmit\n" +
		" face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n" +
		"    lo:     120       2    0    0    0     0          0         0      120       2    0    0    0     0       0          0\n" +
		"  eth0:    1562      17    1    2    0     0          0         0     2638      19    3    4    0     0       0          0\n"
	got, err := parseNetDev([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	want := []netDev{{name: "eth0", rxBytes: 1562, rxPackets: 17, rxErrors: 1, rxDropped: 2, txBytes: 2638, txPackets: 19, txErrors: 3, txDropped: 4}}
	if !slices.Equal(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for _, bad := range []string{
		"h\nh\neth0 1 2 3\n",
		"h\nh\neth0: 1 2 3\n",
		"h\nh\neth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 x\n",
		"h\nh\n: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n",
	} {
		if _, err := parseNetDev([]byte(bad)); err == nil {
			t.Errorf("no error for %q", bad)
		}
	}
}

// FuzzParseNetDev feeds the /proc/net/dev parser any bytes: interfaces
// or an error, never a panic.
func FuzzParseNetDev(f *testing.F) {
	f.Add([]byte("h\nh\n  eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n"))
	f.Add([]byte("h\nh\n:::\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		devs, err := parseNetDev(data)
		if err == nil && len(devs) > maxNetDevs {
			t.Fatalf("%d interfaces", len(devs))
		}
	})
}

// TestMetricValues checks every metric's values against its descriptor,
// and that a pod's sums add its members' figures per label values.
func TestMetricValues(t *testing.T) {
	descs, err := (&Server{}).ListMetricDescriptors(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]int{}
	for _, d := range descs.Descriptors {
		if _, dup := keys[d.Name]; dup || d.Help == "" {
			t.Errorf("descriptor %s: duplicate or without help", d.Name)
		}
		keys[d.Name] = len(d.LabelKeys)
	}
	now := time.Unix(1700000000, 0)
	ctr := func(cpuNs uint64) *metricSource {
		return &metricSource{seen: now, started: now.Add(-time.Minute), cg: &typesv1.Metrics{
			CpuUsageNs: cpuNs, MemoryUsageBytes: 1000, MemoryCacheBytes: 300, Processes: 1, CpuQuotaUs: 50000,
			CpuPressure: &typesv1.Pressure{SomeUs: 3_500_000, FullUs: 1_000_000},
			IoDevices:   []*typesv1.BlockIO{{Major: 1 << 30, Minor: 7, ReadBytes: 10, WriteBytes: 20}},
		}, fs: &fsFigures{device: "/dev/x", capacityBytes: 1 << 30, inodes: 100, inodesFree: 40, usedBytes: 4096, usageKnown: true}}
	}
	pod := &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "ns"}
	check := func(ms []*runtimeapi.Metric) map[string]uint64 {
		out := map[string]uint64{}
		for _, m := range ms {
			if n, ok := keys[m.Name]; !ok || n != len(m.LabelValues) {
				t.Errorf("metric %s: labels %v, descriptor has %d keys", m.Name, m.LabelValues, n)
			}
			if m.Timestamp != now.UnixNano() {
				t.Errorf("metric %s: time %d", m.Name, m.Timestamp)
			}
			key := m.Name
			if extra := m.LabelValues[3:]; len(extra) > 0 {
				key += "{" + strings.Join(extra, ",") + "}"
			}
			out[key] = m.Value.GetValue()
		}
		return out
	}
	c := check(metricValues(perContainer, []*metricSource{ctr(2_500_000_000)}, "c", pod))
	for name, want := range map[string]uint64{
		"container_cpu_usage_seconds_total{total}":                            2,
		"container_memory_working_set_bytes":                                  700,
		"container_spec_cpu_quota":                                            50000,
		"container_pressure_cpu_waiting_seconds_total":                        3,
		"container_pressure_cpu_stalled_seconds_total":                        1,
		"container_fs_usage_bytes{/dev/x}":                                    4096,
		"container_fs_inodes_free{/dev/x}":                                    40,
		"container_blkio_device_usage_total{1073741824:7,1073741824,7,Write}": 20,
		"container_start_time_seconds":                                        uint64(now.Unix() - 60),
	} {
		if c[name] != want {
			t.Errorf("container %s = %d, want %d", name, c[name], want)
		}
	}
	if _, ok := c["container_pressure_memory_waiting_seconds_total"]; ok {
		t.Error("memory pressure reported where the cgroup has none")
	}
	p := check(metricValues(podSum, []*metricSource{ctr(2_500_000_000), ctr(600_000_000)}, "", pod))
	// 2.5 s and 0.6 s: the nanoseconds add up before they become seconds.
	if p["container_cpu_usage_seconds_total{total}"] != 3 || p["container_processes"] != 2 || p["container_memory_usage_bytes"] != 2000 {
		t.Errorf("pod sums %v", p)
	}
	if _, ok := p["container_spec_cpu_quota"]; ok {
		t.Error("a limit summed for the pod")
	}
}
