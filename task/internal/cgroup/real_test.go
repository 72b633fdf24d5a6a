package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/internal/testutil"
)

// TestRealCgroup runs a busy process with a socket open in a cgroup of
// its own on this host (v1 controllers plus the unified hierarchy on a
// hybrid host, or v2) and reads it through Load, as the shim does.
func TestRealCgroup(t *testing.T) {
	testutil.RequireRoot(t, "sh")
	name := fmt.Sprintf("berth-cgtest-%d", os.Getpid())
	var st unix.Statfs_t
	if err := unix.Statfs(cgroupRoot, &st); err != nil {
		t.Fatal(err)
	}
	var dirs []string
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		dirs = []string{filepath.Join(cgroupRoot, name)}
	} else {
		for _, c := range []string{"memory", "cpu", "cpuacct", "pids", "unified"} {
			if _, err := os.Stat(filepath.Join(cgroupRoot, c)); err == nil {
				dirs = append(dirs, filepath.Join(cgroupRoot, c, name))
			}
		}
	}
	for _, dir := range dirs {
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			// The process is reaped before (cleanups run last first).
			if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("remove cgroup: %v", err)
			}
		})
	}
	// A quota of half a CPU, so CFS periods are counted, where the host
	// gives the cgroup a cpu controller (a v2 host may not enable it).
	quota, shares := false, false
	for _, f := range []struct {
		file, value string
		set         *bool
	}{
		{"cpu.cfs_quota_us", "50000", &quota}, {"cpu.shares", "512", &shares}, {"cpu.max", "50000 100000", &quota},
	} {
		for _, dir := range dirs {
			if _, err := os.Stat(filepath.Join(dir, f.file)); err == nil {
				if err := os.WriteFile(filepath.Join(dir, f.file), []byte(f.value), 0); err != nil {
					t.Fatal(err)
				}
				*f.set = true
			}
		}
	}

	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	sock0, sock1 := os.NewFile(uintptr(fds[0]), "sock0"), os.NewFile(uintptr(fds[1]), "sock1")
	defer sock1.Close()
	// The shell waits on its stdin pipe until it is in the cgroup, then
	// runs a child (v1 charges memory where it is allocated: what the
	// shell had stays charged to the cgroup it came from) and spins.
	cmd := exec.Command("sh", "-c", "read x; cat /dev/null; while :; do :; done")
	cmd.ExtraFiles = []*os.File{sock0}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sock0.Close()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	})
	pid := cmd.Process.Pid
	for _, dir := range dirs {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			t.Fatal(err)
		}
	}
	cg, err := Load(pid)
	if err != nil {
		t.Fatal(err)
	}
	// Read while the shell still waits on its stdin: one process.
	first, err := cg.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first: %v", first)
	if first.Processes != 1 {
		t.Errorf("processes %d, want 1", first.Processes)
	}
	if hasFile(dirs, "pids.current") && first.PidsCurrent != 1 {
		t.Errorf("threads %d, want 1", first.PidsCurrent)
	}
	// stdin, stdout, stderr and the socket at least.
	if first.FileDescriptors < 4 || first.Sockets != 1 {
		t.Errorf("descriptors %d, sockets %d; want at least 4 and 1", first.FileDescriptors, first.Sockets)
	}
	if first.NofileSoftLimit == 0 {
		t.Error("no RLIMIT_NOFILE")
	}
	if quota && (first.CpuQuotaUs != 50000 || first.CpuPeriodUs != 100000) {
		t.Errorf("quota %d / period %d, want 50000 / 100000", first.CpuQuotaUs, first.CpuPeriodUs)
	}
	if shares && first.CpuShares != 512 {
		t.Errorf("shares %d, want 512", first.CpuShares)
	}
	if first.CpuPressure == nil && hasPSI() {
		t.Error("no CPU pressure where the kernel has PSI")
	}

	if _, err := stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	// CPU time, CFS periods and memory grow while it spins; no
	// time bound on it, a busy machine only makes it slower.
	for {
		time.Sleep(100 * time.Millisecond)
		m, err := cg.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		if m.CpuUsageNs > first.CpuUsageNs && (!quota || m.CpuPeriods > first.CpuPeriods) && m.CpuUserNs > 0 && m.MemoryUsageBytes > 0 {
			t.Logf("later: cpu %d ns, periods %d (throttled %d, %d ns), memory %d", m.CpuUsageNs, m.CpuPeriods, m.CpuThrottledPeriods, m.CpuThrottledNs, m.MemoryUsageBytes)
			break
		}
	}
}

// hasPSI tells whether the kernel keeps pressure stall information.
func hasPSI() bool {
	_, err := os.ReadFile("/proc/pressure/cpu")
	return err == nil
}

// hasFile tells whether one of dirs has the file name.
func hasFile(dirs []string, name string) bool {
	for _, dir := range dirs {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return true
		}
	}
	return false
}
