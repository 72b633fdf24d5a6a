package cri

import (
	"context"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/errdefs"
	typesv1 "github.com/berthrt/berth/proto/types/v1"
)

// Statistics come from the shim's Stats, which reads the container's
// cgroup (v1 or v2); a container without a task (created or exited) has
// its attributes and writable layer only.

// ContainerStats reports one container's usage.
func (s *Server) ContainerStats(ctx context.Context, req *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	ctx = nsContext(ctx)
	c, err := s.containerByID(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	st, err := s.containerStats(ctx, c)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ContainerStatsResponse{Stats: st}, nil
}

// ListContainerStats reports the usage of the containers the filter
// matches.
func (s *Server) ListContainerStats(ctx context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	ctx = nsContext(ctx)
	f := req.GetFilter()
	list, err := s.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		Id: f.GetId(), PodSandboxId: f.GetPodSandboxId(), LabelSelector: f.GetLabelSelector(),
	}})
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ListContainerStatsResponse{}
	for _, item := range list.GetContainers() {
		c, err := s.containerByID(item.GetId())
		if err != nil {
			continue // removed meanwhile
		}
		st, err := s.containerStats(ctx, c)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		resp.Stats = append(resp.Stats, st)
	}
	return resp, nil
}

// containerStats reads c's cgroup metrics (when it runs) and the usage
// of its writable layer.
func (s *Server) containerStats(ctx context.Context, c *container) (*runtimeapi.ContainerStats, error) {
	st, _, err := s.containerStatsMetrics(ctx, c)
	return st, err
}

// containerStatsMetrics is containerStats with the cgroup metrics it was
// made of, nil when c has no task.
func (s *Server) containerStatsMetrics(ctx context.Context, c *container) (*runtimeapi.ContainerStats, *client.Metrics, error) {
	st := &runtimeapi.ContainerStats{Attributes: &runtimeapi.ContainerAttributes{
		Id: c.rec.ID, Metadata: c.config.GetMetadata(), Labels: c.config.GetLabels(), Annotations: c.config.GetAnnotations(),
	}}
	ctr, err := s.client.LoadContainer(ctx, c.rec.ID)
	if err != nil {
		return nil, nil, err
	}
	info, err := ctr.Info(ctx)
	if err != nil {
		return nil, nil, err
	}
	if info.SnapshotKey != "" {
		if u, err := s.client.SnapshotService(info.Snapshotter).Usage(ctx, info.SnapshotKey); err == nil {
			st.WritableLayer = &runtimeapi.FilesystemUsage{
				Timestamp:  time.Now().UnixNano(),
				FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: s.cfg.ImageFSDir},
				UsedBytes:  &runtimeapi.UInt64Value{Value: uint64(u.Size)},
				InodesUsed: &runtimeapi.UInt64Value{Value: uint64(u.Inodes)},
			}
		}
	}
	task, err := ctr.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return st, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	m, err := task.Metrics(ctx)
	if errdefs.IsNotFound(err) {
		return st, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	st.Cpu, st.Memory = cpuMemory(m)
	st.Swap = swapUsage(m)
	if io := m.Data.GetIoPressure(); io != nil {
		st.Io = &runtimeapi.IoUsage{Timestamp: m.Timestamp.UnixNano(), Psi: psiStats(io)}
	}
	return st, m, nil
}

// cpuMemory converts cgroup metrics to the CRI's. The working set is the
// usage less the page cache, which the kernel can reclaim.
func cpuMemory(m *client.Metrics) (*runtimeapi.CpuUsage, *runtimeapi.MemoryUsage) {
	d := m.Data
	if d == nil {
		d = &typesv1.Metrics{}
	}
	ts := m.Timestamp.UnixNano()
	ws := workingSet(d)
	mem := &runtimeapi.MemoryUsage{
		Timestamp:       ts,
		WorkingSetBytes: &runtimeapi.UInt64Value{Value: ws},
		UsageBytes:      &runtimeapi.UInt64Value{Value: d.GetMemoryUsageBytes()},
		RssBytes:        &runtimeapi.UInt64Value{Value: d.GetMemoryRssBytes()},
		PageFaults:      &runtimeapi.UInt64Value{Value: d.GetMemoryPgfault()},
		MajorPageFaults: &runtimeapi.UInt64Value{Value: d.GetMemoryPgmajfault()},
	}
	if l := d.GetMemoryLimitBytes(); l > 0 && l > ws {
		mem.AvailableBytes = &runtimeapi.UInt64Value{Value: l - ws}
	}
	cpu := &runtimeapi.CpuUsage{Timestamp: ts, UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: d.GetCpuUsageNs()}, Psi: psiStats(d.GetCpuPressure())}
	mem.Psi = psiStats(d.GetMemoryPressure())
	return cpu, mem
}

// psiStats converts a cgroup's pressure to the CRI's (totals in
// nanoseconds); nil where the kernel keeps none for the cgroup.
func psiStats(p *typesv1.Pressure) *runtimeapi.PsiStats {
	if p == nil {
		return nil
	}
	us := uint64(time.Microsecond)
	return &runtimeapi.PsiStats{
		Some: &runtimeapi.PsiData{Total: p.GetSomeUs() * us, Avg10: p.GetSomeAvg10(), Avg60: p.GetSomeAvg60(), Avg300: p.GetSomeAvg300()},
		Full: &runtimeapi.PsiData{Total: p.GetFullUs() * us, Avg10: p.GetFullAvg10(), Avg60: p.GetFullAvg60(), Avg300: p.GetFullAvg300()},
	}
}

// swapUsage is the cgroup's swap use and, when it has a swap limit, what
// is left of it (the limit is memory plus swap, as v1's memsw).
func swapUsage(m *client.Metrics) *runtimeapi.SwapUsage {
	d := m.Data
	sw := &runtimeapi.SwapUsage{Timestamp: m.Timestamp.UnixNano(), SwapUsageBytes: &runtimeapi.UInt64Value{Value: d.GetMemorySwapBytes()}}
	if both, mem := d.GetMemorySwapLimitBytes(), d.GetMemoryLimitBytes(); both > 0 && mem > 0 && both >= mem {
		sw.SwapAvailableBytes = &runtimeapi.UInt64Value{Value: (both - mem) - min(d.GetMemorySwapBytes(), both-mem)}
	}
	return sw
}

// PodSandboxStats reports a pod's usage: the sum of its sandbox's and
// containers' cgroups, and each container's.
func (s *Server) PodSandboxStats(ctx context.Context, req *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error) {
	ctx = nsContext(ctx)
	sb, err := s.sandboxByID(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	st, err := s.podStats(ctx, sb)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PodSandboxStatsResponse{Stats: st}, nil
}

// ListPodSandboxStats reports the usage of the pods the filter matches.
func (s *Server) ListPodSandboxStats(ctx context.Context, req *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	ctx = nsContext(ctx)
	f := req.GetFilter()
	list, err := s.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{Id: f.GetId(), LabelSelector: f.GetLabelSelector()}})
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ListPodSandboxStatsResponse{}
	for _, item := range list.GetItems() {
		sb, err := s.sandboxByID(item.GetId())
		if err != nil {
			continue
		}
		st, err := s.podStats(ctx, sb)
		if err != nil {
			return nil, err
		}
		resp.Stats = append(resp.Stats, st)
	}
	return resp, nil
}

func (s *Server) podStats(ctx context.Context, sb *sandbox) (*runtimeapi.PodSandboxStats, error) {
	now := time.Now().UnixNano()
	st := &runtimeapi.PodSandboxStats{
		Attributes: &runtimeapi.PodSandboxAttributes{
			Id: sb.rec.ID, Metadata: sb.config.GetMetadata(), Labels: sb.config.GetLabels(), Annotations: sb.config.GetAnnotations(),
		},
		Linux: &runtimeapi.LinuxPodSandboxStats{
			Cpu:     &runtimeapi.CpuUsage{Timestamp: now, UsageCoreNanoSeconds: &runtimeapi.UInt64Value{}},
			Memory:  &runtimeapi.MemoryUsage{Timestamp: now, WorkingSetBytes: &runtimeapi.UInt64Value{}, UsageBytes: &runtimeapi.UInt64Value{}, RssBytes: &runtimeapi.UInt64Value{}},
			Process: &runtimeapi.ProcessUsage{Timestamp: now, ProcessCount: &runtimeapi.UInt64Value{}},
		},
	}
	add := func(m *client.Metrics) {
		cpu, mem := cpuMemory(m)
		st.Linux.Cpu.UsageCoreNanoSeconds.Value += cpu.UsageCoreNanoSeconds.Value
		st.Linux.Memory.WorkingSetBytes.Value += mem.WorkingSetBytes.Value
		st.Linux.Memory.UsageBytes.Value += mem.UsageBytes.Value
		st.Linux.Memory.RssBytes.Value += mem.RssBytes.Value
		st.Linux.Process.ProcessCount.Value += m.Data.GetProcesses()
	}
	if task, _, err := s.sandboxTask(ctx, sb.rec.ID); err == nil {
		if m, err := task.Metrics(ctx); err == nil {
			add(m)
		}
	}
	for _, c := range s.containersOf(sb.rec.ID) {
		cs, m, err := s.containerStatsMetrics(ctx, c)
		if err != nil {
			continue
		}
		st.Linux.Containers = append(st.Linux.Containers, cs)
		if m != nil {
			add(m)
		}
	}
	if sb.netns != nil {
		if devs, err := podNetDevs(sb.netns); err == nil {
			st.Linux.Network = networkUsage(devs)
		}
	}
	return st, nil
}

// networkUsage is the CRI's view of a pod's interfaces; eth0, the
// interface CNI names in a pod, is the default one.
func networkUsage(devs []netDev) *runtimeapi.NetworkUsage {
	n := &runtimeapi.NetworkUsage{Timestamp: time.Now().UnixNano()}
	for _, d := range devs {
		u := &runtimeapi.NetworkInterfaceUsage{
			Name:    d.name,
			RxBytes: &runtimeapi.UInt64Value{Value: d.rxBytes}, RxErrors: &runtimeapi.UInt64Value{Value: d.rxErrors},
			TxBytes: &runtimeapi.UInt64Value{Value: d.txBytes}, TxErrors: &runtimeapi.UInt64Value{Value: d.txErrors},
		}
		n.Interfaces = append(n.Interfaces, u)
		if d.name == "eth0" {
			n.DefaultInterface = u
		}
	}
	return n
}
