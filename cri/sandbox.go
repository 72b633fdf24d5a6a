package cri

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/cri/cni"
	"github.com/berthrt/berth/cri/netns"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/io/cio"
	"github.com/berthrt/berth/oci"
)

// cleanupTimeout bounds the undo of a failed call and each teardown step
// run on a context that the caller's end must not cut short.
const cleanupTimeout = 30 * time.Second

// undoList collects the steps that undo a call done half-way, run in
// reverse order when it fails.
type undoList []func(ctx context.Context) error

func (u *undoList) add(fn func(ctx context.Context) error) { *u = append(*u, fn) }

// run undoes, on a context of its own, and returns err with what failed.
func (u undoList) run(ctx context.Context, err error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	for i := len(u) - 1; i >= 0; i-- {
		if uerr := u[i](ctx); uerr != nil {
			err = errors.Join(err, fmt.Errorf("undo: %w", uerr))
		}
	}
	return err
}

// sandboxByID returns the sandbox whose id is id or starts with it (a
// unique prefix, as crictl passes them).
func (s *Server) sandboxByID(id string) (*sandbox, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return byID(s.sandboxes, id, "pod sandbox")
}

// byID looks id up in m, exactly or as a unique prefix.
func byID[T any](m map[string]*T, id, what string) (*T, error) {
	if id == "" {
		return nil, fmt.Errorf("%s id is empty: %w", what, errdefs.ErrInvalidArgument)
	}
	if v, ok := m[id]; ok {
		return v, nil
	}
	var found *T
	for k, v := range m {
		if strings.HasPrefix(k, id) {
			if found != nil {
				return nil, fmt.Errorf("%s id %q is ambiguous: %w", what, id, errdefs.ErrInvalidArgument)
			}
			found = v
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%s %q: %w", what, id, errdefs.ErrNotFound)
	}
	return found, nil
}

// sandboxImage returns the sandbox image, pulled when it is missing.
func (s *Server) sandboxImage(ctx context.Context) (*client.Image, error) {
	name, err := normalizeRef(s.cfg.SandboxImage)
	if err != nil {
		return nil, fmt.Errorf("sandbox_image: %w", err)
	}
	img, err := s.client.GetImage(ctx, name)
	if errdefs.IsNotFound(err) {
		if _, err := s.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: name}}); err != nil {
			return nil, fmt.Errorf("sandbox image: %w", err)
		}
		img, err = s.client.GetImage(ctx, name)
	}
	return img, err
}

// RunPodSandbox makes and starts a pod sandbox: its folder of shared
// files, its network namespace wired by CNI, and the sandbox container
// that holds its namespaces.
func (s *Server) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (_ *runtimeapi.RunPodSandboxResponse, err error) {
	ctx = nsContext(ctx)
	cfg := req.GetConfig()
	md := cfg.GetMetadata()
	if md.GetName() == "" || md.GetNamespace() == "" || md.GetUid() == "" {
		return nil, fmt.Errorf("pod sandbox metadata: name, namespace and uid are required: %w", errdefs.ErrInvalidArgument)
	}
	if h := req.GetRuntimeHandler(); h != "" && h != "runc" {
		return nil, fmt.Errorf("runtime handler %q: berth has only the default handler: %w", h, errdefs.ErrNotFound)
	}
	rawConfig, err := proto.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	id := newID()
	name := sandboxName(md)
	if err := s.reserveName(name, id); err != nil {
		return nil, err
	}
	var undo undoList
	undo.add(func(context.Context) error { s.releaseName(name, id); return nil })
	defer func() {
		if err != nil {
			err = undo.run(ctx, err)
		}
	}()

	img, err := s.sandboxImage(ctx)
	if err != nil {
		return nil, err
	}
	sb := &sandbox{config: cfg, rec: sandboxRecord{
		ID: id, Config: rawConfig, CreatedAt: time.Now().UTC(),
		Dir: filepath.Join(s.cfg.StateDir, "sandboxes", id), RuntimeHandler: req.GetRuntimeHandler(),
	}}
	undo.add(func(context.Context) error { return removePodFiles(sb.rec.Dir) })
	if err := writePodFiles(sb.rec.Dir, cfg); err != nil {
		return nil, fmt.Errorf("pod files: %w", err)
	}
	nsOpts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	hostNet := nsOpts.GetNetwork() == runtimeapi.NamespaceMode_NODE
	if !hostNet {
		ns, err := netns.New(s.cfg.NetNSDir)
		if err != nil {
			return nil, fmt.Errorf("pod network namespace: %w", err)
		}
		sb.netns, sb.rec.NetNS = ns, ns.Path()
		undo.add(func(context.Context) error { return ns.Remove() })
		// The record names the namespace and the ADD to come before the
		// ADD runs: a crash after it leaves a record that stop and
		// berthd's start release the IP of.
		sb.rec.NetworkPending = s.cfg.Network != nil
	}

	ext, err := recordExtension(sb.rec)
	if err != nil {
		return nil, err
	}
	specOpts, err := s.sandboxSpec(img, sb)
	if err != nil {
		return nil, err
	}
	ctr, err := s.client.NewContainer(ctx, id,
		client.WithNewSnapshot(id, img),
		client.WithImage(img),
		client.WithContainerLabels(map[string]string{KindLabel: KindSandbox, SandboxLabel: id}),
		client.WithContainerExtension(RecordExtension, ext),
		client.WithNewSpec(specOpts...),
	)
	if err != nil {
		return nil, fmt.Errorf("sandbox container: %w", err)
	}
	undo.add(func(ctx context.Context) error { return ctr.Delete(ctx, client.WithSnapshotCleanup) })
	if sb.rec.NetworkPending {
		if err := s.setupNetwork(ctx, sb, &undo); err != nil {
			return nil, err
		}
	}
	task, err := ctr.NewTask(ctx, cio.NullIO)
	if err != nil {
		return nil, fmt.Errorf("sandbox task: %w", err)
	}
	undo.add(func(ctx context.Context) error {
		_ = task.Kill(ctx, syscall.SIGKILL)
		_, err := task.Delete(ctx, client.WithProcessKill)
		return err
	})
	if err := task.Start(ctx); err != nil {
		return nil, fmt.Errorf("start sandbox: %w", err)
	}
	s.mu.Lock()
	s.sandboxes[id] = sb
	s.mu.Unlock()
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: id}, nil
}

// podNetwork is what the CNI needs to know of a pod.
func podNetwork(cfg *runtimeapi.PodSandboxConfig) cni.Pod {
	md := cfg.GetMetadata()
	pod := cni.Pod{Name: md.GetName(), Namespace: md.GetNamespace(), UID: md.GetUid(), CgroupParent: cfg.GetLinux().GetCgroupParent()}
	for _, pm := range cfg.GetPortMappings() {
		pod.PortMappings = append(pod.PortMappings, cni.PortMapping{
			HostPort: pm.GetHostPort(), ContainerPort: pm.GetContainerPort(), HostIP: pm.GetHostIp(),
			Protocol: strings.ToLower(pm.GetProtocol().String()),
		})
	}
	return pod
}

// sandboxSpec returns the spec options of a sandbox container: the
// sandbox image's command, the pod's hostname, namespaces, sysctls,
// cgroup parent and shared files.
func (s *Server) sandboxSpec(img *client.Image, sb *sandbox) ([]oci.SpecOpts, error) {
	cfg := sb.config
	nsOpts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	opts := []oci.SpecOpts{oci.WithImageConfig(img)}
	if nsOpts.GetNetwork() == runtimeapi.NamespaceMode_NODE {
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace))
	} else {
		opts = append(opts, oci.WithLinuxNamespace(specs.NetworkNamespace, sb.rec.NetNS))
	}
	if nsOpts.GetIpc() == runtimeapi.NamespaceMode_NODE {
		opts = append(opts, oci.WithHostNamespace(specs.IPCNamespace))
	}
	if nsOpts.GetPid() == runtimeapi.NamespaceMode_NODE {
		opts = append(opts, oci.WithHostNamespace(specs.PIDNamespace))
	}
	if nsOpts.GetNetwork() == runtimeapi.NamespaceMode_NODE {
		// The host's UTS namespace goes with the host's network, as the
		// kubelet expects of hostNetwork pods.
		opts = append(opts, oci.WithHostNamespace(specs.UTSNamespace),
			func(_ context.Context, sp *specs.Spec) error { sp.Hostname = ""; return nil })
	} else if h := cfg.GetHostname(); h != "" {
		opts = append(opts, oci.WithHostname(h))
	}
	sc := cfg.GetLinux().GetSecurityContext()
	opts = append(opts,
		withSysctls(cfg.GetLinux().GetSysctls()),
		withCgroupParent(cfg.GetLinux().GetCgroupParent(), sb.rec.ID),
		withPodFiles(sb.rec.Dir, nsOpts.GetIpc() == runtimeapi.NamespaceMode_NODE, false),
		oci.WithAnnotations(map[string]string{
			annotationContainerType: "sandbox",
			annotationSandboxID:     sb.rec.ID,
			annotationSandboxName:   cfg.GetMetadata().GetName(),
			annotationSandboxNS:     cfg.GetMetadata().GetNamespace(),
		}),
	)
	security, err := sandboxSecurityOpts(sc)
	if err != nil {
		return nil, err
	}
	return append(opts, security...), nil
}

// sandboxState reads whether the sandbox's task runs, and its pid.
func (s *Server) sandboxTask(ctx context.Context, id string) (client.Task, client.Status, error) {
	ctr, err := s.client.LoadContainer(ctx, id)
	if err != nil {
		return nil, client.Status{}, err
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return nil, client.Status{}, err
	}
	st, err := task.Status(ctx)
	return task, st, err
}

// StopPodSandbox stops every container of the pod and its sandbox, and
// tears down its network. Stopping a stopped or removed pod is no error.
func (s *Server) StopPodSandbox(ctx context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	ctx = nsContext(ctx)
	sb, err := s.sandboxByID(req.GetPodSandboxId())
	if errdefs.IsNotFound(err) {
		return &runtimeapi.StopPodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := s.stopSandbox(ctx, sb); err != nil {
		return nil, err
	}
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

// stopSandbox stops the pod's containers (killed at once, as the kubelet
// stopped them with their grace period before), deletes the sandbox's
// task, tears the network down and marks the record stopped. Each step is
// idempotent, so a stop that failed half-way can be called again.
func (s *Server) stopSandbox(ctx context.Context, sb *sandbox) error {
	for _, c := range s.containersOf(sb.rec.ID) {
		if err := s.stopContainer(ctx, c, 0); err != nil {
			return fmt.Errorf("stop container %s: %w", c.rec.ID, err)
		}
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.removed || sb.rec.Stopped {
		return nil
	}
	if err := s.deleteTask(ctx, sb.rec.ID); err != nil {
		return fmt.Errorf("stop sandbox %s: %w", sb.rec.ID, err)
	}
	if sb.rec.NetNS != "" {
		if s.cfg.Network != nil {
			if err := s.cfg.Network.Teardown(ctx, sb.rec.ID, sb.rec.NetNS, podNetwork(sb.config)); err != nil {
				return fmt.Errorf("tear down the network of pod %s: %w", sb.rec.ID, err)
			}
		}
		if sb.netns != nil {
			if err := sb.netns.Remove(); err != nil {
				return fmt.Errorf("remove the network namespace of pod %s: %w", sb.rec.ID, err)
			}
		}
	}
	rec := sb.rec
	rec.Stopped = true
	if err := s.saveRecord(ctx, rec.ID, rec); err != nil {
		return err
	}
	sb.rec = rec
	return nil
}

// deleteTask kills the task of berth container id and deletes it; a task
// or container already gone is no error.
func (s *Server) deleteTask(ctx context.Context, id string) error {
	ctr, err := s.client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	task, err := ctr.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := task.Delete(ctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	return nil
}

// RemovePodSandbox stops the pod if needed, removes its containers, its
// sandbox container and its files. Removing a removed pod is no error.
func (s *Server) RemovePodSandbox(ctx context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	ctx = nsContext(ctx)
	sb, err := s.sandboxByID(req.GetPodSandboxId())
	if errdefs.IsNotFound(err) {
		return &runtimeapi.RemovePodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := s.stopSandbox(ctx, sb); err != nil {
		return nil, err
	}
	for _, c := range s.containersOf(sb.rec.ID) {
		if err := s.removeContainer(ctx, c); err != nil {
			return nil, err
		}
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.removed {
		return &runtimeapi.RemovePodSandboxResponse{}, nil
	}
	if err := s.deleteContainer(ctx, sb.rec.ID); err != nil {
		return nil, err
	}
	if err := removePodFiles(sb.rec.Dir); err != nil {
		return nil, err
	}
	sb.removed = true
	s.mu.Lock()
	delete(s.sandboxes, sb.rec.ID)
	s.mu.Unlock()
	s.releaseName(sandboxName(sb.config.GetMetadata()), sb.rec.ID)
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

// deleteContainer deletes berth container id with its snapshot; gone is
// no error.
func (s *Server) deleteContainer(ctx context.Context, id string) error {
	ctr, err := s.client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := ctr.Delete(ctx, client.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	return nil
}

// PodSandboxStatus reports a pod: its state, IPs, namespaces, labels.
func (s *Server) PodSandboxStatus(ctx context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	ctx = nsContext(ctx)
	sb, err := s.sandboxByID(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	st, pid := s.sandboxStatus(ctx, sb)
	resp := &runtimeapi.PodSandboxStatusResponse{Status: st}
	if req.GetVerbose() {
		resp.Info = map[string]string{"info": fmt.Sprintf(`{"pid":%d,"netns":%q,"dir":%q}`, pid, sb.rec.NetNS, sb.rec.Dir)}
	}
	return resp, nil
}

// sandboxStatus returns the CRI status of sb and its task's pid.
func (s *Server) sandboxStatus(ctx context.Context, sb *sandbox) (*runtimeapi.PodSandboxStatus, uint32) {
	sb.mu.Lock()
	rec := sb.rec
	sb.mu.Unlock()
	state := runtimeapi.PodSandboxState_SANDBOX_NOTREADY
	var pid uint32
	if !rec.Stopped {
		if task, st, err := s.sandboxTask(ctx, rec.ID); err == nil && st.Status == client.Running {
			state, pid = runtimeapi.PodSandboxState_SANDBOX_READY, task.Pid()
		}
	}
	cfg := sb.config
	st := &runtimeapi.PodSandboxStatus{
		Id: rec.ID, Metadata: cfg.GetMetadata(), State: state, CreatedAt: rec.CreatedAt.UnixNano(),
		Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(), RuntimeHandler: rec.RuntimeHandler,
		Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{
			Options: cfg.GetLinux().GetSecurityContext().GetNamespaceOptions(),
		}},
		Network: &runtimeapi.PodSandboxNetworkStatus{},
	}
	if len(rec.IPs) > 0 {
		st.Network.Ip = rec.IPs[0]
		for _, ip := range rec.IPs[1:] {
			st.Network.AdditionalIps = append(st.Network.AdditionalIps, &runtimeapi.PodIP{Ip: ip})
		}
	}
	return st, pid
}

// ListPodSandbox lists the pods that match the filter: id (or a prefix),
// state and labels.
func (s *Server) ListPodSandbox(ctx context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	ctx = nsContext(ctx)
	f := req.GetFilter()
	s.mu.Lock()
	list := slices.Collect(maps.Values(s.sandboxes))
	s.mu.Unlock()
	resp := &runtimeapi.ListPodSandboxResponse{}
	for _, sb := range list {
		if f.GetId() != "" && !strings.HasPrefix(sb.rec.ID, f.GetId()) {
			continue
		}
		if !matchLabels(f.GetLabelSelector(), sb.config.GetLabels()) {
			continue
		}
		st, _ := s.sandboxStatus(ctx, sb)
		if f.GetState() != nil && f.GetState().GetState() != st.State {
			continue
		}
		resp.Items = append(resp.Items, &runtimeapi.PodSandbox{
			Id: st.Id, Metadata: st.Metadata, State: st.State, CreatedAt: st.CreatedAt,
			Labels: st.Labels, Annotations: st.Annotations, RuntimeHandler: st.RuntimeHandler,
		})
	}
	slices.SortFunc(resp.Items, func(a, b *runtimeapi.PodSandbox) int { return int(b.CreatedAt - a.CreatedAt) })
	return resp, nil
}

// matchLabels reports whether labels has every key and value of sel.
func matchLabels(sel, labels map[string]string) bool {
	for k, v := range sel {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}
