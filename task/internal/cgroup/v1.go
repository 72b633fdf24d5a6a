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
	memory, cpuacct, pids, blkio string   // folders; "" for a controller not mounted
	oom                          oomWatch // the eventfd
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
	// The throttle files count every bio whatever the I/O scheduler (the
	// blkio.io_* ones only under BFQ or CFQ); _recursive ones include the
	// descendants, as v2's io.stat does. Linux 6 kernels fill them only
	// for the devices the cgroup has a throttle rule for.
	read(c.blkio, "blkio.throttle.io_service_bytes_recursive", blkioFile(&m.IoReadBytes, &m.IoWriteBytes))
	read(c.blkio, "blkio.throttle.io_serviced_recursive", blkioFile(&m.IoReadOps, &m.IoWriteOps))
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
