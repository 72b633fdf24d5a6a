package task

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/berthrt/berth/shimapi"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// The shim reads the dozen cgroup files its metrics and OOM events need by
// hand rather than through containerd/cgroups v3, which links cilium/ebpf,
// godbus/dbus, go-systemd, debug/elf, zstd and crypto into every shim: that
// was 1.4 MB of a 7.2 MB stripped binary and 1.3 MiB of an idle shim's
// 9.0 MiB PSS (bench/shimbench, one idle container, cgroup v1).

// cgroupRoot is where the host mounts its cgroup filesystems.
const cgroupRoot = "/sys/fs/cgroup"

// userHZ is the unit of cpuacct.stat: clock ticks, fixed at 100 per second
// in the kernel's user interface whatever CONFIG_HZ is.
const userHZ = 100

// noLimit is the threshold above which a v1 limit means "none": the kernel
// reports an unlimited memory cgroup as the largest page-aligned int64.
const noLimit = 1 << 62

// cgroup is the container's cgroup as the shim reads it: metrics, and OOM
// notification. Which hierarchy is used follows the host: cgroup v1 on
// legacy and hybrid hosts (runc puts the container in the v1 controllers
// there), v2 on unified hosts.
type cgroup interface {
	metrics() (*shimapi.Metrics, error)
	// watchOOM calls fn for every OOM kill in the cgroup until close.
	watchOOM(fn func()) error
	close()
}

// loadCgroup finds the cgroup of the process pid, the container's init.
func loadCgroup(pid int) (cgroup, error) {
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
		return &cgroupV2{dir: filepath.Join(cgroupRoot, v2)}, nil
	}
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup"))
	if err != nil {
		return nil, err
	}
	cg := &cgroupV1{}
	for _, c := range []struct {
		name string
		dir  *string
	}{{"memory", &cg.memory}, {"cpuacct", &cg.cpuacct}, {"pids", &cg.pids}} {
		*c.dir = v1Dir(mounts, c.name, v1[c.name])
	}
	if cg.memory == "" && cg.cpuacct == "" && cg.pids == "" {
		return nil, fmt.Errorf("process %d: none of the memory, cpuacct and pids cgroup v1 controllers found", pid)
	}
	return cg, nil
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
		rel, ok := strings.CutPrefix(path, m.Root)
		if !ok || (rel != "" && rel[0] != '/' && m.Root != "/") {
			continue
		}
		return filepath.Join(m.Mountpoint, rel)
	}
	return ""
}

func hasOption(options, name string) bool {
	for o := range strings.SplitSeq(options, ",") {
		if o == name {
			return true
		}
	}
	return false
}

// cgroupV1 reads the container's folders in the v1 controllers.
type cgroupV1 struct {
	memory, cpuacct, pids string   // folders; "" for a controller not mounted
	oom                   oomWatch // the eventfd
}

func (c *cgroupV1) metrics() (*shimapi.Metrics, error) {
	m := &shimapi.Metrics{CgroupVersion: 1}
	var user, system uint64
	var errs []error
	read := func(dir, name string, fn func(string) error) {
		if dir != "" {
			errs = append(errs, ignoreNotExist(fn(filepath.Join(dir, name))))
		}
	}
	read(c.cpuacct, "cpuacct.usage", uintFile(&m.CpuUsageNs))
	read(c.cpuacct, "cpuacct.stat", keyedFile(map[string]*uint64{"user": &user, "system": &system}))
	m.CpuUserNs, m.CpuKernelNs = user*(1e9/userHZ), system*(1e9/userHZ)
	read(c.memory, "memory.usage_in_bytes", uintFile(&m.MemoryUsageBytes))
	read(c.memory, "memory.max_usage_in_bytes", uintFile(&m.MemoryMaxUsageBytes))
	read(c.memory, "memory.limit_in_bytes", uintFile(&m.MemoryLimitBytes))
	if m.MemoryLimitBytes >= noLimit {
		m.MemoryLimitBytes = 0
	}
	read(c.memory, "memory.stat", keyedFile(map[string]*uint64{"total_rss": &m.MemoryRssBytes, "total_cache": &m.MemoryCacheBytes}))
	read(c.memory, "memory.oom_control", keyedFile(map[string]*uint64{"oom_kill": &m.OomEvents}))
	read(c.pids, "pids.current", uintFile(&m.PidsCurrent))
	read(c.pids, "pids.max", uintFile(&m.PidsLimit))
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

// watchOOM registers an eventfd for memory.oom_control with
// cgroup.event_control: the kernel signals it on every OOM in the cgroup,
// and once more when the cgroup is removed.
func (c *cgroupV1) watchOOM(fn func()) error {
	if c.memory == "" {
		return errors.New("no memory cgroup")
	}
	// Non-blocking, so the runtime poller owns the wait and close ends it.
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return os.NewSyscallError("eventfd", err)
	}
	events := os.NewFile(uintptr(efd), "oom-eventfd")
	control, err := os.Open(filepath.Join(c.memory, "memory.oom_control"))
	if err != nil {
		events.Close()
		return err
	}
	// The registration holds the cgroup, not the descriptor: it may close.
	defer control.Close()
	reg := strconv.Itoa(efd) + " " + strconv.Itoa(int(control.Fd()))
	if err := os.WriteFile(filepath.Join(c.memory, "cgroup.event_control"), []byte(reg), 0); err != nil {
		events.Close()
		return err
	}
	c.oom.set(events)
	go func() {
		buf := make([]byte, 8)
		for {
			if _, err := events.Read(buf); err != nil {
				return
			}
			// Removing the cgroup signals the eventfd too; that is no OOM.
			if _, err := os.Stat(c.memory); err != nil {
				return
			}
			fn()
		}
	}()
	return nil
}

func (c *cgroupV1) close() { c.oom.close() }

// cgroupV2 reads the container's folder in the unified hierarchy.
type cgroupV2 struct {
	dir string
	oom oomWatch // the inotify descriptor watching memory.events
}

func (c *cgroupV2) metrics() (*shimapi.Metrics, error) {
	m := &shimapi.Metrics{CgroupVersion: 2}
	var usage, user, system uint64
	var errs []error
	read := func(name string, fn func(string) error) {
		errs = append(errs, ignoreNotExist(fn(filepath.Join(c.dir, name))))
	}
	// v2 reports microseconds.
	read("cpu.stat", keyedFile(map[string]*uint64{"usage_usec": &usage, "user_usec": &user, "system_usec": &system}))
	m.CpuUsageNs, m.CpuUserNs, m.CpuKernelNs = usage*1000, user*1000, system*1000
	read("memory.current", uintFile(&m.MemoryUsageBytes))
	read("memory.peak", uintFile(&m.MemoryMaxUsageBytes)) // since Linux 5.19
	read("memory.max", uintFile(&m.MemoryLimitBytes))
	read("memory.stat", keyedFile(map[string]*uint64{"anon": &m.MemoryRssBytes, "file": &m.MemoryCacheBytes}))
	read("memory.events", keyedFile(map[string]*uint64{"oom_kill": &m.OomEvents}))
	read("pids.current", uintFile(&m.PidsCurrent))
	read("pids.max", uintFile(&m.PidsLimit))
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

// watchOOM watches memory.events with inotify, which the kernel notifies
// on every change, and calls fn when its oom_kill count grows.
func (c *cgroupV2) watchOOM(fn func()) error {
	path := filepath.Join(c.dir, "memory.events")
	var last uint64
	if err := keyedFile(map[string]*uint64{"oom_kill": &last})(path); err != nil {
		return err
	}
	ifd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return os.NewSyscallError("inotify_init1", err)
	}
	in := os.NewFile(uintptr(ifd), "memory-events-inotify")
	if _, err := unix.InotifyAddWatch(ifd, path, unix.IN_MODIFY); err != nil {
		in.Close()
		return &fs.PathError{Op: "inotify_add_watch", Path: path, Err: err}
	}
	c.oom.set(in)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := in.Read(buf)
			if err != nil {
				return
			}
			if watchRemoved(buf[:n]) { // the cgroup is gone
				return
			}
			var kills uint64
			if keyedFile(map[string]*uint64{"oom_kill": &kills})(path) != nil {
				continue
			}
			if kills > last {
				last = kills
				fn()
			}
		}
	}()
	return nil
}

// watchRemoved reports whether a batch of inotify events holds IN_IGNORED:
// the watched file was removed.
func watchRemoved(buf []byte) bool {
	for len(buf) >= unix.SizeofInotifyEvent {
		// struct inotify_event: wd int32 at 0, mask uint32 at 4, cookie
		// uint32 at 8, len uint32 at 12, then len bytes of name.
		mask := binary.NativeEndian.Uint32(buf[4:8])
		nameLen := int(binary.NativeEndian.Uint32(buf[12:16]))
		if mask&unix.IN_IGNORED != 0 {
			return true
		}
		if unix.SizeofInotifyEvent+nameLen > len(buf) {
			return false
		}
		buf = buf[unix.SizeofInotifyEvent+nameLen:]
	}
	return false
}

func (c *cgroupV2) close() { c.oom.close() }

// oomWatch holds the descriptor that an OOM watch's goroutine reads:
// closing it ends the read, and with it the goroutine.
type oomWatch struct {
	mu sync.Mutex
	f  *os.File // guarded by mu; nil when not watching
}

func (w *oomWatch) set(f *os.File) {
	w.mu.Lock()
	w.f = f
	w.mu.Unlock()
}

func (w *oomWatch) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
}

// uintFile returns a reader of a file holding one number into dst; "max"
// (no limit) reads as 0.
func uintFile(dst *uint64) func(string) error {
	return func(path string) error {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		s := strings.TrimSpace(string(data))
		if s == "max" {
			*dst = 0
			return nil
		}
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		*dst = v
		return nil
	}
}

// keyedFile returns a reader of a flat keyed file ("key value" lines) that
// stores the values of the keys asked for; other keys are skipped.
func keyedFile(keys map[string]*uint64) func(string) error {
	return func(path string) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			key, value, ok := strings.Cut(sc.Text(), " ")
			dst := keys[key]
			if !ok || dst == nil {
				continue
			}
			v, err := strconv.ParseUint(strings.TrimSpace(value), 10, 64)
			if err != nil {
				return fmt.Errorf("%s: %s: %w", path, key, err)
			}
			*dst = v
		}
		return sc.Err()
	}
}

// ignoreNotExist drops the error of a file that is not there: a controller
// or a file that the kernel does not have costs its figure, not the rest.
func ignoreNotExist(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
