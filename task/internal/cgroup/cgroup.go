// Package cgroup reads the container's cgroup for the shim: the metrics of
// Stats (CPU, memory, pids, block I/O, pressure, and the processes' open
// descriptors) and OOM notification, on cgroup v1 (legacy and
// hybrid hosts, where runc puts the container in the v1 controllers) and v2
// (unified hosts). Which hierarchy is used follows the host.
//
// # Why it is hand-written
//
// The shim reads the cgroup files its metrics and OOM events need (some
// thirty, and /proc for the processes' descriptors) by hand rather than through containerd/cgroups v3, which links cilium/ebpf,
// godbus/dbus, go-systemd, debug/elf, zstd and crypto into every shim: that
// was 1.4 MB of a 7.2 MB stripped binary and 1.3 MiB of an idle shim's
// 9.0 MiB PSS (bench/shimbench, one idle container, cgroup v1). One shim
// runs per container, so that memory is paid once per container. What is
// read here is the kernel's documented interface files, nothing more; the
// shim never writes a limit (runc update does).
//
// # Invariants
//
//   - A file or controller the kernel does not have costs its figure, not
//     the rest: Metrics leaves it zero (a pressure figure absent).
//   - One Metrics call reads a bounded amount: statistics files of at most
//     65536 lines, and the descriptors of at most 16384 processes (a
//     cgroup with more reports its processes but no descriptor counts).
//   - Nothing outside the container's own cgroup is read as its figures:
//     on a hybrid host the unified hierarchy's root (the host's pressure)
//     is never taken for the container's folder there.
//   - An OOM watch owns one descriptor (an eventfd on v1, an inotify
//     descriptor on v2) and one goroutine blocked reading it; Close closes
//     the descriptor, which ends the goroutine. The removal of the cgroup
//     ends it too and is never reported as an OOM.
package cgroup

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/shimapi"
)

// cgroupRoot is where the host mounts its cgroup filesystems.
const cgroupRoot = "/sys/fs/cgroup"

// userHZ is the unit of cpuacct.stat: clock ticks, fixed at 100 per second
// in the kernel's user interface whatever CONFIG_HZ is.
const userHZ = 100

// noLimit is the threshold above which a v1 limit means "none": the kernel
// reports an unlimited memory cgroup as the largest page-aligned int64.
const noLimit = 1 << 62

// Cgroup is the container's cgroup as the shim reads it: metrics, and OOM
// notification.
type Cgroup interface {
	Metrics() (*shimapi.Metrics, error)
	// WatchOOM calls fn for every OOM kill in the cgroup until close.
	WatchOOM(fn func()) error
	// Close ends the OOM watch.
	Close()
}

// Load finds the cgroup of the process pid, the container's init.
func Load(pid int) (Cgroup, error) {
	self, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return nil, err
	}
	v1, v2, err := parseProcCgroup(self)
	if err != nil {
		return nil, err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(cgroupRoot, &st); err != nil {
		return nil, &fs.PathError{Op: "statfs", Path: cgroupRoot, Err: err}
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		if v2 == "" {
			return nil, fmt.Errorf("process %d: no cgroup v2 path", pid)
		}
		return &cgroupV2{dir: filepath.Join(cgroupRoot, v2), pid: pid}, nil
	}
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return nil, err
	}
	cg := &cgroupV1{pid: pid}
	for _, c := range []struct {
		name string
		dir  *string
	}{{"memory", &cg.memory}, {"cpu", &cg.cpu}, {"cpuacct", &cg.cpuacct}, {"pids", &cg.pids}, {"blkio", &cg.blkio}} {
		*c.dir = v1Dir(mounts, c.name, v1[c.name])
	}
	if cg.memory == "" && cg.cpuacct == "" && cg.pids == "" && cg.blkio == "" {
		return nil, fmt.Errorf("process %d: none of the memory, cpuacct, pids and blkio cgroup v1 controllers found", pid)
	}
	cg.unified = unifiedDir(mounts, v2)
	return cg, nil
}

// unifiedDir returns the folder of a hybrid host's v2 cgroup path under
// the unified mount, or "" when there is no such mount or the path is the
// root: the root's figures are the host's, not the container's.
func unifiedDir(mounts []*mountinfo.Info, path string) string {
	if path == "" || path == "/" {
		return ""
	}
	for _, m := range mounts {
		if m.FSType != "cgroup2" {
			continue
		}
		if dir, ok := mountedDir(m, path); ok {
			return dir
		}
	}
	return ""
}

// parseProcCgroup parses /proc/PID/cgroup: the v1 path of each controller,
// and the v2 path (hierarchy 0), "" when there is none.
func parseProcCgroup(data []byte) (v1 map[string]string, v2 string, err error) {
	v1 = make(map[string]string)
	for line := range bytes.Lines(data) {
		// hierarchy-ID:controller-list:cgroup-path
		parts := strings.SplitN(strings.TrimSuffix(string(line), "\n"), ":", 3)
		if len(parts) != 3 {
			return nil, "", fmt.Errorf("/proc/PID/cgroup: bad line %q", line)
		}
		if parts[0] == "0" && parts[1] == "" {
			v2 = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			v1[c] = parts[2]
		}
	}
	return v1, v2, nil
}

// v1Dir returns the folder of the cgroup path of a v1 controller under the
// mount of that controller, or "" when the controller is not mounted or the
// path lies outside the mounted part of its hierarchy.
func v1Dir(mounts []*mountinfo.Info, controller, path string) string {
	if path == "" {
		return ""
	}
	for _, m := range mounts {
		if !hasOption(m.VFSOptions, controller) {
			continue
		}
		if dir, ok := mountedDir(m, path); ok {
			return dir
		}
	}
	return ""
}

// mountedDir returns where a cgroup path of m's hierarchy is under m's
// mount point; false when the path lies outside the mounted part.
func mountedDir(m *mountinfo.Info, path string) (string, bool) {
	rel, ok := strings.CutPrefix(path, m.Root)
	if !ok || (rel != "" && rel[0] != '/' && m.Root != "/") {
		return "", false
	}
	return filepath.Join(m.Mountpoint, rel), true
}

func hasOption(options, name string) bool {
	for o := range strings.SplitSeq(options, ",") {
		if o == name {
			return true
		}
	}
	return false
}
