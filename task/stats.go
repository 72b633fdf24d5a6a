package task

import (
	"os"
	"sync"

	"github.com/berthrt/berth/shimapi"
	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	"golang.org/x/sys/unix"
)

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
	if cgroups.Mode() == cgroups.Unified {
		group, err := cgroup2.PidGroupPath(pid)
		if err != nil {
			return nil, err
		}
		m, err := cgroup2.Load(group)
		if err != nil {
			return nil, err
		}
		return &cgroupV2{m: m, stop: make(chan struct{})}, nil
	}
	cg, err := cgroup1.Load(cgroup1.PidPath(pid))
	if err != nil {
		return nil, err
	}
	return &cgroupV1{cg: cg}, nil
}

type cgroupV1 struct {
	cg cgroup1.Cgroup

	mu     sync.Mutex
	events *os.File // guarded by mu: the OOM eventfd, while watched
}

func (c *cgroupV1) metrics() (*shimapi.Metrics, error) {
	st, err := c.cg.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return nil, err
	}
	m := &shimapi.Metrics{CgroupVersion: 1}
	if cpu := st.GetCPU().GetUsage(); cpu != nil {
		m.CpuUsageNs, m.CpuUserNs, m.CpuKernelNs = cpu.Total, cpu.User, cpu.Kernel
	}
	if mem := st.GetMemory(); mem != nil {
		m.MemoryUsageBytes = mem.GetUsage().GetUsage()
		m.MemoryMaxUsageBytes = mem.GetUsage().GetMax()
		if l := mem.GetUsage().GetLimit(); l < 1<<62 { // v1 reports "no limit" as a huge number
			m.MemoryLimitBytes = l
		}
		m.MemoryRssBytes, m.MemoryCacheBytes = mem.TotalRSS, mem.TotalCache
	}
	m.OomEvents = st.GetMemoryOomControl().GetOomKill()
	if p := st.GetPids(); p != nil {
		m.PidsCurrent, m.PidsLimit = p.Current, p.Limit
	}
	return m, nil
}

func (c *cgroupV1) watchOOM(fn func()) error {
	fd, err := c.cg.OOMEventFD()
	if err != nil {
		return err
	}
	// Non-blocking, so the runtime poller owns the wait and close ends it.
	if err := unix.SetNonblock(int(fd), true); err != nil {
		unix.Close(int(fd))
		return err
	}
	f := os.NewFile(fd, "oom-eventfd")
	c.mu.Lock()
	c.events = f
	c.mu.Unlock()
	go func() {
		buf := make([]byte, 8)
		for {
			if _, err := f.Read(buf); err != nil {
				return
			}
			// Removing the cgroup signals the eventfd too; that is no OOM.
			if c.cg.State() == cgroup1.Deleted {
				return
			}
			fn()
		}
	}()
	return nil
}

func (c *cgroupV1) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.events != nil {
		c.events.Close()
		c.events = nil
	}
}

type cgroupV2 struct {
	m    *cgroup2.Manager
	stop chan struct{}
	once sync.Once
}

func (c *cgroupV2) metrics() (*shimapi.Metrics, error) {
	st, err := c.m.Stat()
	if err != nil {
		return nil, err
	}
	m := &shimapi.Metrics{CgroupVersion: 2}
	if cpu := st.GetCPU(); cpu != nil {
		// v2 reports microseconds.
		m.CpuUsageNs, m.CpuUserNs, m.CpuKernelNs = cpu.UsageUsec*1000, cpu.UserUsec*1000, cpu.SystemUsec*1000
	}
	if mem := st.GetMemory(); mem != nil {
		m.MemoryUsageBytes, m.MemoryMaxUsageBytes = mem.Usage, mem.MaxUsage
		if mem.UsageLimit < 1<<62 {
			m.MemoryLimitBytes = mem.UsageLimit
		}
		m.MemoryRssBytes, m.MemoryCacheBytes = mem.Anon, mem.File
	}
	m.OomEvents = st.GetMemoryEvents().GetOomKill()
	if p := st.GetPids(); p != nil {
		m.PidsCurrent, m.PidsLimit = p.Current, p.Limit
	}
	return m, nil
}

func (c *cgroupV2) watchOOM(fn func()) error {
	events, errs := c.m.EventChan()
	go func() {
		var last uint64
		for {
			select {
			case e, ok := <-events:
				if !ok {
					return
				}
				if e.OOMKill > last {
					last = e.OOMKill
					fn()
				}
			case <-errs:
				return
			case <-c.stop:
				return
			}
		}
	}()
	return nil
}

func (c *cgroupV2) close() { c.once.Do(func() { close(c.stop) }) }
