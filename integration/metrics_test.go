package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/oci"
	tasksv1 "github.com/berthrt/berth/proto/tasks/v1"
)

// TestMetricsEndpoint runs berthd with [metrics] on a loopback port and
// containers in two namespaces, scrapes /v1/metrics, parses it with
// Prometheus's own text parser, and finds each container's cgroup
// metrics under its namespace and id, the API calls that made them by
// service, method and code (unary and stream calls), the shims, the bytes a pull read from a
// registry, and the Go and process metrics.
func TestMetricsEndpoint(t *testing.T) {
	testutil.RequireRoot(t, "runc", "busybox")
	reg := testutil.StartRegistry(t, testutil.RegistryConfig{})
	img := pushTestImage(t, reg.Addr+"/metrics/app:1", 64<<10, 32<<10)
	addr := testutil.FreeLoopbackAddr(t)
	d := newDaemon(t, withConfig(fmt.Sprintf("[metrics]\naddress = %q\n", addr)))
	a := d.api()
	pullCtx := d.nsContext("metrics-pull")
	if _, err := d.client(t, "metrics-pull").Pull(pullCtx, img.ref, client.WithPlainHTTP()); err != nil {
		t.Fatal(err)
	}
	const perNamespace = 5
	for _, ns := range []string{"metrics-a", "metrics-b"} {
		for i := range perNamespace {
			a.run(t, d.nsContext(ns), fmt.Sprintf("c%d", i), []string{"sleep", "300"})
		}
	}
	// A container that writes 1 MiB past the page cache (O_DIRECT) to a
	// folder on the host's disk. It has a write limit on that disk, far
	// above what it writes: on cgroup v1 the kernel (6.x) counts a
	// cgroup's block I/O only on devices it has a throttle rule for.
	ioDir := t.TempDir()
	a.run(t, d.nsContext("metrics-a"), "io", []string{"sh", "-c", "dd if=/dev/zero of=/data/io.bin bs=64k count=16 oflag=direct && sleep 300"},
		oci.WithMounts([]specs.Mount{{Destination: "/data", Type: "bind", Source: ioDir, Options: []string{"rbind", "rw"}}}),
		withWriteLimitOn(t, ioDir, 1<<40))
	// One call that fails, to see its code.
	if _, err := a.tasks.Start(d.nsContext("metrics-a"), &tasksv1.StartRequest{ContainerId: "absent"}); err == nil {
		t.Fatal("start of an absent task succeeded")
	}

	start := time.Now()
	families := scrape(t, "http://"+addr+"/v1/metrics")
	t.Logf("first scrape with %d containers (a round of Stats calls): %v", 2*perNamespace, time.Since(start))
	start = time.Now()
	scrape(t, "http://"+addr+"/v1/metrics")
	t.Logf("second scrape (from the cache): %v", time.Since(start))

	for _, ns := range []string{"metrics-a", "metrics-b"} {
		for i := range perNamespace {
			labels := map[string]string{"namespace": ns, "container_id": fmt.Sprintf("c%d", i)}
			for _, name := range []string{"berth_container_cpu_usage_seconds_total", "berth_container_memory_usage_bytes",
				"berth_container_pids", "berth_container_oom_events_total"} {
				if _, ok := find(families, name, labels); !ok {
					t.Errorf("%s%v missing", name, labels)
				}
			}
			if v, _ := find(families, "berth_container_pids", labels); v < 1 {
				t.Errorf("berth_container_pids%v = %v, want at least the shell", labels, v)
			}
		}
	}
	for _, c := range []struct {
		labels  map[string]string
		atLeast float64
	}{
		{map[string]string{"service": "berth.services.tasks.v1.Tasks", "method": "Create", "code": "OK"}, 2 * perNamespace},
		{map[string]string{"service": "berth.services.tasks.v1.Tasks", "method": "Start", "code": "OK"}, 2 * perNamespace},
		{map[string]string{"service": "berth.services.tasks.v1.Tasks", "method": "Start", "code": "NotFound"}, 1},
		{map[string]string{"service": "berth.services.containers.v1.Containers", "method": "Create", "code": "OK"}, 2 * perNamespace},
		// A stream call.
		{map[string]string{"service": "berth.services.transfer.v1.Transfer", "method": "Pull", "code": "OK"}, 1},
	} {
		if v, ok := find(families, "berth_api_calls_total", c.labels); !ok || v < c.atLeast {
			t.Errorf("berth_api_calls_total%v = %v (found %v), want at least %v", c.labels, v, ok, c.atLeast)
		}
	}
	// dd may finish after the first scrape: scrape until its bytes show
	// (the cache refreshes every 10 s), within a bound.
	ioLabels := map[string]string{"namespace": "metrics-a", "container_id": "io"}
	for deadline := time.Now().Add(time.Minute); ; {
		v, _ := find(families, "berth_container_io_write_bytes_total", ioLabels)
		ops, _ := find(families, "berth_container_io_write_ops_total", ioLabels)
		if v >= 1<<20 && ops >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("berth_container_io_write_bytes_total%v = %v, ops %v; want at least 1 MiB the container wrote", ioLabels, v, ops)
			break
		}
		time.Sleep(time.Second)
		families = scrape(t, "http://"+addr+"/v1/metrics")
	}
	for _, name := range []string{"berth_container_io_read_bytes_total", "berth_container_io_read_ops_total"} {
		if _, ok := find(families, name, ioLabels); !ok {
			t.Errorf("%s%v missing", name, ioLabels)
		}
	}
	if h := families["berth_api_call_duration_seconds"]; h == nil || h.GetType() != dto.MetricType_HISTOGRAM {
		t.Errorf("berth_api_call_duration_seconds: %v", h)
	}
	if v, _ := find(families, "berth_shims", nil); v != 2*perNamespace+1 {
		t.Errorf("berth_shims = %v, want %d", v, 2*perNamespace+1)
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "berth_restore_duration_seconds", "berth_metrics_stats_refresh_seconds"} {
		if families[name] == nil {
			t.Errorf("%s missing", name)
		}
	}
	var blobBytes float64
	for dgst, data := range img.blobs {
		if dgst != img.root.Digest {
			blobBytes += float64(len(data))
		}
	}
	for kind, want := range map[string]float64{"manifest": float64(img.root.Size), "blob": blobBytes} {
		// A retried download reads some bytes twice: at least.
		labels := map[string]string{"registry": reg.Addr, "kind": kind}
		if v, ok := find(families, "berth_pull_bytes_total", labels); !ok || v < want {
			t.Errorf("berth_pull_bytes_total%v = %v (found %v), want at least %v", labels, v, ok, want)
		}
	}
	// A second pull finds every blob in the store and reads nothing.
	before, _ := find(families, "berth_pull_bytes_total", map[string]string{"registry": reg.Addr, "kind": "blob"})
	if _, err := d.client(t, "metrics-pull").Pull(pullCtx, img.ref, client.WithPlainHTTP()); err != nil {
		t.Fatal(err)
	}
	families = scrape(t, "http://"+addr+"/v1/metrics")
	if after, _ := find(families, "berth_pull_bytes_total", map[string]string{"registry": reg.Addr, "kind": "blob"}); after != before {
		t.Errorf("berth_pull_bytes_total of blobs went from %v to %v over a pull of an image the store has", before, after)
	}
	if v, _ := find(families, "berth_metrics_stats_refresh_seconds", nil); v > 0 {
		t.Logf("berthd's own measure of the round of Stats calls: %.1f ms", v*1000)
	}
}

// scrape GETs url and parses the Prometheus text format.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	client := &http.Client{Timeout: 30 * time.Second} // a bound, not a speed check
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		t.Fatalf("GET %s: %s: %s", url, resp.Status, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return families
}

// find returns the value of the series of family name whose labels
// include want.
func find(families map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := families[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			if got[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
		return 0, true
	}
	return 0, false
}

// withWriteLimitOn limits the container's writes to the disk that holds
// dir to bytesPerSecond (blkio throttle); a partition's limit goes to its
// disk, as the kernel takes it only there.
func withWriteLimitOn(t *testing.T, dir string, bytesPerSecond uint64) oci.SpecOpts {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	dev := fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
	sys := "/sys/dev/block/" + dev
	if _, err := os.Stat(sys + "/partition"); err == nil {
		data, err := os.ReadFile(sys + "/../dev")
		if err != nil {
			t.Fatal(err)
		}
		dev = strings.TrimSpace(string(data))
	}
	testutil.Require(t, func() bool { _, err := os.Stat("/sys/dev/block/" + dev); return err == nil }(),
		dir+" is on no block device (a throttle rule needs one)")
	var major, minor int64
	if _, err := fmt.Sscanf(dev, "%d:%d", &major, &minor); err != nil {
		t.Fatalf("device %q: %v", dev, err)
	}
	return func(_ context.Context, s *specs.Spec) error {
		if s.Linux.Resources == nil {
			s.Linux.Resources = &specs.LinuxResources{}
		}
		if s.Linux.Resources.BlockIO == nil {
			s.Linux.Resources.BlockIO = &specs.LinuxBlockIO{}
		}
		s.Linux.Resources.BlockIO.ThrottleWriteBpsDevice = append(s.Linux.Resources.BlockIO.ThrottleWriteBpsDevice,
			specs.LinuxThrottleDevice{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: major, Minor: minor}, Rate: bytesPerSecond})
		return nil
	}
}
