package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/shimapi"
)

// cgroupV1 reads the container's folders in the v1 controllers.
type cgroupV1 struct {
	memory, cpu, cpuacct, pids, blkio string // folders; "" for a controller not mounted
	// unified is the container's folder in a hybrid host's v2 hierarchy,
	// which has no controllers but the pressure files; "" when none.
	unified string
	pid     int      // the container's init
	oom     oomWatch // the eventfd
}

func (c *cgroupV1) Metrics() (*shimapi.Metrics, error) {
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
	read(c.cpu, "cpu.stat", keyedFile(map[string]*uint64{
		"nr_periods": &m.CpuPeriods, "nr_throttled": &m.CpuThrottledPeriods, "throttled_time": &m.CpuThrottledNs,
	}))
	read(c.cpu, "cpu.cfs_period_us", uintFile(&m.CpuPeriodUs))
	read(c.cpu, "cpu.cfs_quota_us", intFile(&m.CpuQuotaUs)) // -1: none
	read(c.cpu, "cpu.shares", uintFile(&m.CpuShares))

	read(c.memory, "memory.usage_in_bytes", uintFile(&m.MemoryUsageBytes))
	read(c.memory, "memory.max_usage_in_bytes", uintFile(&m.MemoryMaxUsageBytes))
	read(c.memory, "memory.limit_in_bytes", uintFile(&m.MemoryLimitBytes))
	read(c.memory, "memory.memsw.limit_in_bytes", uintFile(&m.MemorySwapLimitBytes))
	read(c.memory, "memory.soft_limit_in_bytes", uintFile(&m.MemoryReservationBytes))
	for _, limit := range []*uint64{&m.MemoryLimitBytes, &m.MemorySwapLimitBytes, &m.MemoryReservationBytes} {
		if *limit >= noLimit {
			*limit = 0
		}
	}
	read(c.memory, "memory.failcnt", uintFile(&m.MemoryFailcnt))
	// Deprecated in v1 since Linux 5.x, yet still read-only there.
	read(c.memory, "memory.kmem.usage_in_bytes", uintFile(&m.MemoryKernelBytes))
	// The total_ keys include the descendants, as v2's memory.stat does.
	// total_swap is there only when the kernel accounts swap.
	read(c.memory, "memory.stat", keyedFile(map[string]*uint64{
		"total_rss": &m.MemoryRssBytes, "total_cache": &m.MemoryCacheBytes,
		"total_mapped_file": &m.MemoryMappedFileBytes, "total_swap": &m.MemorySwapBytes,
		"total_pgfault": &m.MemoryPgfault, "total_pgmajfault": &m.MemoryPgmajfault,
	}))
	read(c.memory, "memory.oom_control", keyedFile(map[string]*uint64{"oom_kill": &m.OomEvents}))
	read(c.pids, "pids.current", uintFile(&m.PidsCurrent))
	read(c.pids, "pids.max", uintFile(&m.PidsLimit))
	// The throttle files count every bio whatever the I/O scheduler (the
	// blkio.io_* ones only under BFQ or CFQ); _recursive ones include the
	// descendants, as v2's io.stat does. Linux 6 kernels fill them only
	// for the devices the cgroup has a throttle rule for.
	var devs ioDevices
	read(c.blkio, "blkio.throttle.io_service_bytes_recursive", blkioFile(&devs,
		func(io *shimapi.BlockIO) *uint64 { return &io.ReadBytes }, func(io *shimapi.BlockIO) *uint64 { return &io.WriteBytes }))
	read(c.blkio, "blkio.throttle.io_serviced_recursive", blkioFile(&devs,
		func(io *shimapi.BlockIO) *uint64 { return &io.ReadOps }, func(io *shimapi.BlockIO) *uint64 { return &io.WriteOps }))
	devs.store(m)
	read(c.unified, "cpu.pressure", pressureFile(&m.CpuPressure))
	read(c.unified, "memory.pressure", pressureFile(&m.MemoryPressure))
	read(c.unified, "io.pressure", pressureFile(&m.IoPressure))
	// Every v1 controller lists the same processes; any mounted one does.
	for _, dir := range []string{c.pids, c.memory, c.cpuacct, c.blkio} {
		if dir != "" {
			read(dir, "cgroup.procs", func(path string) error { return readProcesses(path, m) })
			break
		}
	}
	read(procPath(c.pid), "limits", nofileFile(&m.NofileSoftLimit))
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

// WatchOOM registers an eventfd for memory.oom_control with
// cgroup.event_control: the kernel signals it on every OOM in the cgroup,
// and once more when the cgroup is removed.
func (c *cgroupV1) WatchOOM(fn func()) error {
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

func (c *cgroupV1) Close() { c.oom.close() }
