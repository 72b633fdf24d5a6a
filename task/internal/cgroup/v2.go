package cgroup

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/shimapi"
)

// cgroupV2 reads the container's folder in the unified hierarchy.
type cgroupV2 struct {
	dir string
	pid int      // the container's init
	oom oomWatch // the inotify descriptor watching memory.events
}

func (c *cgroupV2) Metrics() (*shimapi.Metrics, error) {
	m := &shimapi.Metrics{CgroupVersion: 2}
	var usage, user, system, throttled, weight, swapMax uint64
	var errs []error
	read := func(name string, fn func(string) error) {
		errs = append(errs, ignoreNotExist(fn(filepath.Join(c.dir, name))))
	}
	// v2 reports microseconds.
	read("cpu.stat", keyedFile(map[string]*uint64{
		"usage_usec": &usage, "user_usec": &user, "system_usec": &system,
		"nr_periods": &m.CpuPeriods, "nr_throttled": &m.CpuThrottledPeriods, "throttled_usec": &throttled,
	}))
	m.CpuUsageNs, m.CpuUserNs, m.CpuKernelNs, m.CpuThrottledNs = usage*1000, user*1000, system*1000, throttled*1000
	read("cpu.max", cpuMaxFile(&m.CpuQuotaUs, &m.CpuPeriodUs))
	read("cpu.weight", uintFile(&weight))
	m.CpuShares = weightToShares(weight)
	read("memory.current", uintFile(&m.MemoryUsageBytes))
	read("memory.peak", uintFile(&m.MemoryMaxUsageBytes)) // since Linux 5.19
	read("memory.max", uintFile(&m.MemoryLimitBytes))
	read("memory.low", uintFile(&m.MemoryReservationBytes))
	read("memory.swap.current", uintFile(&m.MemorySwapBytes))
	read("memory.swap.max", uintFile(&swapMax))
	if swapMax > 0 && m.MemoryLimitBytes > 0 {
		// v1's memsw limit is memory plus swap; v2 limits swap alone.
		m.MemorySwapLimitBytes = m.MemoryLimitBytes + swapMax
	}
	read("memory.stat", keyedFile(map[string]*uint64{
		"anon": &m.MemoryRssBytes, "file": &m.MemoryCacheBytes, "kernel": &m.MemoryKernelBytes,
		"file_mapped": &m.MemoryMappedFileBytes, "pgfault": &m.MemoryPgfault, "pgmajfault": &m.MemoryPgmajfault,
	}))
	read("memory.events", keyedFile(map[string]*uint64{"oom_kill": &m.OomEvents, "max": &m.MemoryFailcnt}))
	read("pids.current", uintFile(&m.PidsCurrent))
	read("pids.max", uintFile(&m.PidsLimit))
	var devs ioDevices
	read("io.stat", ioStatFile(&devs)) // hierarchical: the cgroup and its descendants
	devs.store(m)
	read("cpu.pressure", pressureFile(&m.CpuPressure))
	read("memory.pressure", pressureFile(&m.MemoryPressure))
	read("io.pressure", pressureFile(&m.IoPressure))
	read("cgroup.procs", func(path string) error { return readProcesses(path, m) })
	if p := procPath(c.pid); p != "" {
		errs = append(errs, ignoreNotExist(nofileFile(&m.NofileSoftLimit)(filepath.Join(p, "limits"))))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

// weightToShares converts a cgroup v2 cpu.weight (1 to 10000) back to v1
// shares (2 to 262144), the inverse of the linear map runc applies to the
// shares of a spec; 0 stays 0 (no cpu controller).
func weightToShares(weight uint64) uint64 {
	if weight == 0 {
		return 0
	}
	return 2 + (weight-1)*262142/9999
}

// WatchOOM watches memory.events with inotify, which the kernel notifies
// on every change, and calls fn when its oom_kill count grows.
func (c *cgroupV2) WatchOOM(fn func()) error {
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

func (c *cgroupV2) Close() { c.oom.close() }
