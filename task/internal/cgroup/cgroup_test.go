package cgroup

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"google.golang.org/protobuf/proto"

	"github.com/berthrt/berth/shimapi"
)

// writeFiles writes name → content files into dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestParseProcCgroup(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		v1     map[string]string
		v2     string
		hasErr bool
	}{
		{
			name: "hybrid",
			in:   "9:name=systemd:/\n8:pids:/berth/ns/c\n4:memory:/berth/ns/c\n2:cpu,cpuacct:/berth/ns/c\n0::/\n",
			v1:   map[string]string{"name=systemd": "/", "pids": "/berth/ns/c", "memory": "/berth/ns/c", "cpu": "/berth/ns/c", "cpuacct": "/berth/ns/c"},
			v2:   "/",
		},
		{name: "unified", in: "0::/berth/ns/c\n", v1: map[string]string{}, v2: "/berth/ns/c"},
		{name: "path with colon", in: "0::/a:b\n", v1: map[string]string{}, v2: "/a:b"},
		{name: "bad line", in: "garbage\n", hasErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v1, v2, err := parseProcCgroup([]byte(tt.in))
			if (err != nil) != tt.hasErr {
				t.Fatalf("error %v, want error %v", err, tt.hasErr)
			}
			if tt.hasErr {
				return
			}
			if v2 != tt.v2 || len(v1) != len(tt.v1) {
				t.Fatalf("got %v %q, want %v %q", v1, v2, tt.v1, tt.v2)
			}
			for k, v := range tt.v1 {
				if v1[k] != v {
					t.Fatalf("controller %s: %q, want %q", k, v1[k], v)
				}
			}
		})
	}
}

func TestV1Dir(t *testing.T) {
	mounts := []*mountinfo.Info{
		{Mountpoint: "/sys/fs/cgroup/cpu,cpuacct", Root: "/", VFSOptions: "rw,cpu,cpuacct"},
		{Mountpoint: "/sys/fs/cgroup/memory", Root: "/", VFSOptions: "rw,memory"},
		{Mountpoint: "/sys/fs/cgroup/pids", Root: "/outer", VFSOptions: "rw,pids"},
	}
	tests := []struct{ controller, path, want string }{
		{"cpuacct", "/berth/ns/c", "/sys/fs/cgroup/cpu,cpuacct/berth/ns/c"},
		{"memory", "/berth/ns/c", "/sys/fs/cgroup/memory/berth/ns/c"},
		{"pids", "/outer/berth/c", "/sys/fs/cgroup/pids/berth/c"},
		{"pids", "/outerx/c", ""}, // outside the mounted part
		{"blkio", "/berth/ns/c", ""},
		{"memory", "", ""},
	}
	for _, tt := range tests {
		if got := v1Dir(mounts, tt.controller, tt.path); got != tt.want {
			t.Errorf("v1Dir(%s, %s) = %q, want %q", tt.controller, tt.path, got, tt.want)
		}
	}
}

func TestUnifiedDir(t *testing.T) {
	mounts := []*mountinfo.Info{
		{Mountpoint: "/sys/fs/cgroup/memory", Root: "/", FSType: "cgroup", VFSOptions: "rw,memory"},
		{Mountpoint: "/sys/fs/cgroup/unified", Root: "/", FSType: "cgroup2", VFSOptions: "rw"},
	}
	tests := []struct{ path, want string }{
		{"/berth/k8s.io/c", "/sys/fs/cgroup/unified/berth/k8s.io/c"},
		{"/", ""}, // the root: the host's figures, not the container's
		{"", ""},
	}
	for _, tt := range tests {
		if got := unifiedDir(mounts, tt.path); got != tt.want {
			t.Errorf("unifiedDir(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
	if got := unifiedDir(mounts[:1], "/berth/c"); got != "" {
		t.Errorf("without a cgroup2 mount: %q", got)
	}
}

func TestCgroupV1Metrics(t *testing.T) {
	mem, cpu, cpuacct, pids, unified := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	writeFiles(t, mem, map[string]string{
		"memory.usage_in_bytes":       "1048576\n",
		"memory.max_usage_in_bytes":   "2097152\n",
		"memory.limit_in_bytes":       "9223372036854771712\n", // no limit
		"memory.memsw.limit_in_bytes": "134217728\n",
		"memory.soft_limit_in_bytes":  "9223372036854771712\n",
		"memory.failcnt":              "6\n",
		"memory.kmem.usage_in_bytes":  "40960\n",
		"memory.stat": "cache 1\nrss 2\npgfault 9\ntotal_cache 4096\ntotal_rss 8192\ntotal_mapped_file 1024\n" +
			"total_swap 512\ntotal_pgfault 77\ntotal_pgmajfault 2\n",
		"memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
	})
	writeFiles(t, cpu, map[string]string{
		"cpu.stat":          "nr_periods 40\nnr_throttled 11\nthrottled_time 123000\nnr_bursts 0\n",
		"cpu.cfs_period_us": "100000\n",
		"cpu.cfs_quota_us":  "-1\n",
		"cpu.shares":        "1024\n",
	})
	writeFiles(t, cpuacct, map[string]string{
		"cpuacct.usage": "123456789\n",
		"cpuacct.stat":  "user 7\nsystem 5\n",
	})
	writeFiles(t, pids, map[string]string{"pids.current": "2\n", "pids.max": "max\n", "cgroup.procs": ""})
	blkio := t.TempDir()
	writeFiles(t, blkio, map[string]string{
		"blkio.throttle.io_service_bytes_recursive": "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 12288\n8:0 Async 0\n8:0 Discard 0\n8:0 Total 12288\n" +
			"253:1 Read 1000\n253:1 Write 24\n253:1 Sync 0\n253:1 Async 1024\n253:1 Discard 0\n253:1 Total 1024\nTotal 13312\n",
		"blkio.throttle.io_serviced_recursive": "8:0 Read 3\n8:0 Write 5\n8:0 Total 8\n253:1 Read 1\n253:1 Write 1\n253:1 Total 2\nTotal 10\n",
	})
	writeFiles(t, unified, map[string]string{
		"cpu.pressure":    "some avg10=1.50 avg60=0.25 avg300=0.05 total=1500\nfull avg10=0.75 avg60=0.00 avg300=0.00 total=700\n",
		"memory.pressure": "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
	})
	got, err := (&cgroupV1{memory: mem, cpu: cpu, cpuacct: cpuacct, pids: pids, blkio: blkio, unified: unified}).Metrics()
	if err != nil {
		t.Fatal(err)
	}
	want := &shimapi.Metrics{
		CgroupVersion: 1,
		CpuUsageNs:    123456789, CpuUserNs: 70_000_000, CpuKernelNs: 50_000_000,
		CpuPeriods: 40, CpuThrottledPeriods: 11, CpuThrottledNs: 123000,
		CpuPeriodUs: 100000, CpuQuotaUs: 0, CpuShares: 1024,
		MemoryUsageBytes: 1 << 20, MemoryMaxUsageBytes: 2 << 20, MemoryLimitBytes: 0,
		MemorySwapLimitBytes: 128 << 20, MemoryReservationBytes: 0, MemoryFailcnt: 6, MemoryKernelBytes: 40960,
		MemoryRssBytes: 8192, MemoryCacheBytes: 4096, MemoryMappedFileBytes: 1024, MemorySwapBytes: 512,
		MemoryPgfault: 77, MemoryPgmajfault: 2, OomEvents: 3,
		PidsCurrent: 2, PidsLimit: 0,
		IoReadBytes: 5096, IoWriteBytes: 8216, IoReadOps: 4, IoWriteOps: 6,
		IoDevices: []*shimapi.BlockIO{
			{Major: 8, Minor: 0, ReadBytes: 4096, WriteBytes: 8192, ReadOps: 3, WriteOps: 5},
			{Major: 253, Minor: 1, ReadBytes: 1000, WriteBytes: 24, ReadOps: 1, WriteOps: 1},
		},
		CpuPressure:    &shimapi.Pressure{SomeUs: 1500, FullUs: 700, SomeAvg10: 1.5, SomeAvg60: 0.25, SomeAvg300: 0.05, FullAvg10: 0.75},
		MemoryPressure: &shimapi.Pressure{},
	}
	if !proto.Equal(got, want) {
		t.Fatalf("metrics\n got %v\nwant %v", got, want)
	}

	// A controller that is not mounted, or a file the kernel lacks, costs
	// its figures only; a file that does not parse is an error.
	os.Remove(filepath.Join(mem, "memory.oom_control"))
	got, err = (&cgroupV1{memory: mem}).Metrics()
	if err != nil || got.MemoryUsageBytes != 1<<20 || got.CpuUsageNs != 0 || got.OomEvents != 0 || got.CpuPressure != nil {
		t.Fatalf("partial: %v, %v", got, err)
	}
	writeFiles(t, mem, map[string]string{"memory.usage_in_bytes": "lots\n"})
	if _, err := (&cgroupV1{memory: mem}).Metrics(); err == nil {
		t.Fatal("no error for a file that does not parse")
	}
	writeFiles(t, cpu, map[string]string{"cpu.cfs_quota_us": "20000\n"})
	if got, err := (&cgroupV1{cpu: cpu}).Metrics(); err != nil || got.CpuQuotaUs != 20000 {
		t.Fatalf("quota: %v, %v", got, err)
	}
}

func TestCgroupV2Metrics(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"cpu.stat": "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 30\nnr_throttled 4\nthrottled_usec 250\n",
		"cpu.max":  "20000 100000\n",
		// runc gives shares 1024 the weight 39, which maps back to 998:
		// the conversion loses precision both ways.
		"cpu.weight":          "39\n",
		"memory.current":      "65536\n",
		"memory.peak":         "131072\n",
		"memory.max":          "67108864\n",
		"memory.low":          "0\n",
		"memory.swap.current": "4096\n",
		"memory.swap.max":     "67108864\n",
		"memory.stat":         "anon 4096\nfile 8192\nkernel 12\nfile_mapped 2048\npgfault 55\npgmajfault 1\n",
		"memory.events":       "low 0\nhigh 0\nmax 4\noom 2\noom_kill 1\noom_group_kill 0\n",
		"pids.current":        "3\n",
		"pids.max":            "100\n",
		"io.stat": "8:0 rbytes=4096 wbytes=8192 rios=3 wios=5 dbytes=0 dios=0\n" +
			"253:1 rbytes=1000 wbytes=24 rios=1 wios=1 dbytes=0 dios=0 cost.vrate=100.00\n",
		"io.pressure":  "some avg10=0.00 avg60=0.00 avg300=0.00 total=42\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=40\n",
		"cgroup.procs": "",
	})
	got, err := (&cgroupV2{dir: dir}).Metrics()
	if err != nil {
		t.Fatal(err)
	}
	want := &shimapi.Metrics{
		CgroupVersion: 2,
		CpuUsageNs:    1_500_000, CpuUserNs: 1_000_000, CpuKernelNs: 500_000,
		CpuPeriods: 30, CpuThrottledPeriods: 4, CpuThrottledNs: 250_000,
		CpuPeriodUs: 100000, CpuQuotaUs: 20000, CpuShares: 998,
		MemoryUsageBytes: 65536, MemoryMaxUsageBytes: 131072, MemoryLimitBytes: 64 << 20,
		MemorySwapBytes: 4096, MemorySwapLimitBytes: 128 << 20, MemoryFailcnt: 4,
		MemoryRssBytes: 4096, MemoryCacheBytes: 8192, MemoryKernelBytes: 12, MemoryMappedFileBytes: 2048,
		MemoryPgfault: 55, MemoryPgmajfault: 1, OomEvents: 1,
		PidsCurrent: 3, PidsLimit: 100,
		IoReadBytes: 5096, IoWriteBytes: 8216, IoReadOps: 4, IoWriteOps: 6,
		IoDevices: []*shimapi.BlockIO{
			{Major: 8, Minor: 0, ReadBytes: 4096, WriteBytes: 8192, ReadOps: 3, WriteOps: 5},
			{Major: 253, Minor: 1, ReadBytes: 1000, WriteBytes: 24, ReadOps: 1, WriteOps: 1},
		},
		IoPressure: &shimapi.Pressure{SomeUs: 42, FullUs: 40},
	}
	if !proto.Equal(got, want) {
		t.Fatalf("metrics\n got %v\nwant %v", got, want)
	}
}

func TestPressureFile(t *testing.T) {
	for _, bad := range []string{
		"some avg10=NaN avg60=0.00 avg300=0.00 total=1\n",
		"some avg10=101 total=1\n",
		"full avg10=0.00 total=-1\n",
	} {
		path := filepath.Join(t.TempDir(), "cpu.pressure")
		writeFiles(t, filepath.Dir(path), map[string]string{"cpu.pressure": bad})
		var p *shimapi.Pressure
		if err := pressureFile(&p)(path); err == nil {
			t.Errorf("no error for %q: %v", bad, p)
		}
	}
}

// TestCgroupV2WatchOOM drives the inotify watch with a plain file: the
// kernel notifies a write to it as it notifies a change of memory.events.
func TestCgroupV2WatchOOM(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"memory.events": "low 0\nhigh 0\nmax 0\noom 1\noom_kill 1\n"})
	cg := &cgroupV2{dir: dir}
	ooms := make(chan struct{}, 8)
	if err := cg.WatchOOM(func() { ooms <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	defer cg.Close()

	expect := func(n int) {
		t.Helper()
		for range n {
			select {
			case <-ooms:
			case <-time.After(5 * time.Second):
				t.Fatal("no OOM event")
			}
		}
		select {
		case <-ooms:
			t.Fatal("one OOM event too many")
		case <-time.After(100 * time.Millisecond):
		}
	}
	// A change that leaves oom_kill as it was is no OOM; the kill counted
	// before the watch began is not reported.
	writeFiles(t, dir, map[string]string{"memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"})
	expect(0)
	writeFiles(t, dir, map[string]string{"memory.events": "low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n"})
	expect(1)

	// Removing the file (the cgroup) ends the watch.
	os.Remove(filepath.Join(dir, "memory.events"))
	time.Sleep(50 * time.Millisecond)
	writeFiles(t, dir, map[string]string{"memory.events": "low 0\nhigh 0\nmax 3\noom 3\noom_kill 3\n"})
	expect(0)
}

// FuzzIOStat feeds cgroup v2's io.stat parser any bytes: it returns sums
// or an error, never panics.
func FuzzIOStat(f *testing.F) {
	f.Add([]byte("8:0 rbytes=4096 wbytes=8192 rios=3 wios=5 dbytes=0 dios=0\n"))
	f.Add([]byte("8:0\n rbytes= =1 rios=18446744073709551616\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "io.stat")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		ioStatFile(&ioDevices{})(path)
	})
}

// FuzzBlkio feeds the cgroup v1 blkio parser any bytes: it returns sums or
// an error, never panics.
func FuzzBlkio(f *testing.F) {
	f.Add([]byte("8:0 Read 4096\n8:0 Write 8192\n8:0 Total 12288\nTotal 12288\n"))
	f.Add([]byte("Read\n8:0 Write -1\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "blkio")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		var devs ioDevices
		blkioFile(&devs, func(io *shimapi.BlockIO) *uint64 { return &io.ReadBytes }, func(io *shimapi.BlockIO) *uint64 { return &io.WriteBytes })(path)
	})
}

// FuzzPressure feeds the pressure stall parser any bytes.
func FuzzPressure(f *testing.F) {
	f.Add([]byte("some avg10=0.00 avg60=0.00 avg300=0.00 total=1500\nfull avg10=0.00 total=7\n"))
	f.Add([]byte("some total=\nfull total=-1 total=x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "cpu.pressure")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		var p *shimapi.Pressure
		pressureFile(&p)(path)
	})
}
