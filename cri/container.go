package cri

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/oci"
)

// Exit reasons the CRI reports, as the kubelet reads them.
const (
	reasonCompleted = "Completed"
	reasonError     = "Error"
	reasonOOMKilled = "OOMKilled"
	reasonUnknown   = "Unknown"
)

// containerByID returns the container whose id is id or starts with it.
func (s *Server) containerByID(id string) (*container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return byID(s.containers, id, "container")
}

// containersOf returns the containers of sandbox id.
func (s *Server) containersOf(id string) []*container {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*container
	for _, c := range s.containers {
		if c.rec.SandboxID == id {
			out = append(out, c)
		}
	}
	return out
}

// CreateContainer makes a container in a pod: its snapshot of the image
// and its spec, joined to the pod's namespaces. It does not start it.
func (s *Server) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest) (_ *runtimeapi.CreateContainerResponse, err error) {
	ctx = nsContext(ctx)
	cfg := req.GetConfig()
	if cfg.GetMetadata().GetName() == "" {
		return nil, fmt.Errorf("container metadata: name is required: %w", errdefs.ErrInvalidArgument)
	}
	sb, err := s.sandboxByID(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	task, st, err := s.sandboxTask(ctx, sb.rec.ID)
	if err != nil || st.Status != client.Running {
		return nil, fmt.Errorf("pod sandbox %s is not running: %w", sb.rec.ID, errors.Join(errdefs.ErrFailedPrecondition, err))
	}
	sandboxPid := task.Pid()
	ci, err := s.findImage(ctx, cfg.GetImage().GetImage())
	if err != nil {
		return nil, fmt.Errorf("container image: %w", err)
	}
	img, err := s.client.GetImage(ctx, ci.names[0])
	if err != nil {
		return nil, err
	}
	rawConfig, err := proto.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	id := newID()
	name := containerName(cfg.GetMetadata(), sb.config.GetMetadata())
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
	c := newContainer(containerRecord{
		ID: id, SandboxID: sb.rec.ID, Config: rawConfig, ImageID: ci.id, ImageName: cfg.GetImage().GetImage(),
		CreatedAt: time.Now().UTC(),
	}, cfg)
	if dir, p := sb.config.GetLogDirectory(), cfg.GetLogPath(); dir != "" && p != "" {
		c.rec.LogPath = filepath.Join(dir, p)
		if !strings.HasPrefix(c.rec.LogPath, filepath.Clean(dir)+"/") {
			return nil, fmt.Errorf("log path %q leaves the pod's log directory: %w", p, errdefs.ErrInvalidArgument)
		}
		if err := os.MkdirAll(filepath.Dir(c.rec.LogPath), 0o755); err != nil {
			return nil, fmt.Errorf("log folder: %w", err)
		}
	}
	undo.add(func(ctx context.Context) error { return s.releaseImageMounts(ctx, id) })
	if c.rec.ImageMounts, err = s.prepareImageMounts(ctx, id, cfg.GetMounts()); err != nil {
		return nil, err
	}
	ext, err := recordExtension(c.rec)
	if err != nil {
		return nil, err
	}
	opts, err := s.containerSpec(ctx, ci, sb, c, sandboxPid)
	if err != nil {
		return nil, err
	}
	undo.add(func(context.Context) error { return os.RemoveAll(s.volumesDir(id)) })
	if _, err := s.client.NewContainer(ctx, id,
		client.WithNewSnapshot(id, img),
		client.WithImage(img),
		client.WithContainerLabels(map[string]string{KindLabel: KindContainer, SandboxLabel: sb.rec.ID}),
		client.WithContainerExtension(RecordExtension, ext),
		client.WithNewSpec(opts...),
	); err != nil {
		return nil, fmt.Errorf("create container: %w", err)
	}
	s.mu.Lock()
	s.containers[id] = c
	s.mu.Unlock()
	return &runtimeapi.CreateContainerResponse{ContainerId: id}, nil
}

// containerSpec returns the spec options of a container: the image's
// config merged with the request, joined to the pod's namespaces.
func (s *Server) containerSpec(ctx context.Context, ci *criImage, sb *sandbox, c *container, sandboxPid uint32) ([]oci.SpecOpts, error) {
	cfg := c.config
	imgCfg := ci.config.Config
	nsOpts := sb.config.GetLinux().GetSecurityContext().GetNamespaceOptions()
	opts := []oci.SpecOpts{
		oci.WithImageConfigSpec(imgCfg),
		withProcessArgs(cfg, imgCfg.Entrypoint, imgCfg.Cmd),
		func(_ context.Context, sp *specs.Spec) error { sp.Hostname = ""; return nil },
	}
	var env []string
	for _, kv := range cfg.GetEnvs() {
		env = append(env, kv.GetKey()+"="+string(kv.GetValue()))
	}
	if len(env) > 0 {
		opts = append(opts, oci.WithEnv(env))
	}
	if wd := cfg.GetWorkingDir(); wd != "" {
		opts = append(opts, oci.WithProcessCwd(wd))
	}
	if cfg.GetTty() {
		opts = append(opts, oci.WithTTY)
	}
	sc := cfg.GetLinux().GetSecurityContext()
	nsJoin, err := s.podNamespaceOpts(ctx, sb, sandboxPid, sc.GetNamespaceOptions())
	if err != nil {
		return nil, err
	}
	security, err := s.containerSecurityOpts(sc, sb)
	if err != nil {
		return nil, err
	}
	opts = append(opts, nsJoin...)
	annotations := map[string]string{
		annotationContainerType: "container",
		annotationSandboxID:     sb.rec.ID,
		annotationSandboxName:   sb.config.GetMetadata().GetName(),
		annotationSandboxNS:     sb.config.GetMetadata().GetNamespace(),
		annotationContainerName: cfg.GetMetadata().GetName(),
		annotationImageName:     cfg.GetImage().GetImage(),
	}
	maps.Copy(annotations, cfg.GetAnnotations())
	opts = append(opts,
		withPodFiles(sb.rec.Dir, nsOpts.GetIpc() == runtimeapi.NamespaceMode_NODE, sc.GetReadonlyRootfs()),
		s.withImageVolumes(c.rec.ID, imgCfg.Volumes, cfg.GetMounts()),
		withCRIMounts(cfg.GetMounts()),
		s.withImageMounts(c.rec.ID, c.rec.ImageMounts),
		withDevices(cfg.GetDevices()),
		withResources(cfg.GetLinux().GetResources()),
		s.withOOMScoreAdj(c.rec.ID, cfg.GetLinux().GetResources()),
		withCgroupParent(sb.config.GetLinux().GetCgroupParent(), c.rec.ID),
	)
	opts = append(opts, security...)
	return append(opts, oci.WithAnnotations(annotations)), nil
}

// ReopenContainerLog has the shim reopen a running container's log file
// at its path, after the kubelet renamed it away to rotate it.
func (s *Server) ReopenContainerLog(ctx context.Context, req *runtimeapi.ReopenContainerLogRequest) (*runtimeapi.ReopenContainerLogResponse, error) {
	ctx = nsContext(ctx)
	c, err := s.containerByID(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	_, task, err := s.runningTask(ctx, c)
	if err != nil {
		return nil, err
	}
	if err := task.ReopenLog(ctx); err != nil {
		return nil, err
	}
	return &runtimeapi.ReopenContainerLogResponse{}, nil
}

// runningTask returns the berth container and task of c, which must be
// running.
func (s *Server) runningTask(ctx context.Context, c *container) (client.Container, client.Task, error) {
	c.mu.Lock()
	running := containerState(c.rec) == runtimeapi.ContainerState_CONTAINER_RUNNING
	c.mu.Unlock()
	if !running {
		return nil, nil, fmt.Errorf("container %s is not running: %w", c.rec.ID, errdefs.ErrFailedPrecondition)
	}
	ctr, err := s.client.LoadContainer(ctx, c.rec.ID)
	if err != nil {
		return nil, nil, err
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return nil, nil, err
	}
	return ctr, task, nil
}

// StartContainer starts a created container and watches for its exit.
func (s *Server) StartContainer(ctx context.Context, req *runtimeapi.StartContainerRequest) (_ *runtimeapi.StartContainerResponse, err error) {
	ctx = nsContext(ctx)
	c, err := s.containerByID(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removed || !c.rec.StartedAt.IsZero() || c.rec.Exited || c.rec.Starting {
		return nil, fmt.Errorf("container %s is not in the created state: %w", c.rec.ID, errdefs.ErrFailedPrecondition)
	}
	ctr, err := s.client.LoadContainer(ctx, c.rec.ID)
	if err != nil {
		return nil, err
	}
	rec := c.rec
	rec.Starting = true
	if err := s.saveRecord(ctx, rec.ID, rec); err != nil {
		return nil, err
	}
	c.rec = rec
	fail := func(err error) error {
		rec := c.rec
		rec.Starting, rec.Exited, rec.ExitCode, rec.Reason, rec.Message = false, true, 128, reasonError, err.Error()
		rec.FinishedAt = time.Now().UTC()
		if serr := s.saveRecord(context.WithoutCancel(ctx), rec.ID, rec); serr != nil {
			return errors.Join(err, serr)
		}
		c.rec = rec
		close(c.exited)
		return err
	}
	task, err := ctr.NewTask(ctx, s.containerIO(c))
	if err != nil {
		return nil, fail(fmt.Errorf("create task: %w", err))
	}
	exitc, err := task.Wait(s.bgContext())
	if err != nil {
		_, derr := task.Delete(context.WithoutCancel(ctx), client.WithProcessKill)
		return nil, fail(errors.Join(err, derr))
	}
	// Taken before Start: an exit, however quick, is never before it.
	startedAt := time.Now().UTC()
	if err := task.Start(ctx); err != nil {
		_, derr := task.Delete(context.WithoutCancel(ctx), client.WithProcessKill)
		return nil, fail(errors.Join(fmt.Errorf("start: %w", err), derr))
	}
	rec = c.rec
	rec.Starting, rec.StartedAt = false, startedAt
	if err := s.saveRecord(ctx, rec.ID, rec); err != nil {
		return nil, err
	}
	c.rec = rec
	go s.watchExit(c, task, exitc)
	return &runtimeapi.StartContainerResponse{}, nil
}

// watchExit records the exit of c's task when it comes, then deletes the
// task (and so its shim). It ends when the server's context does.
func (s *Server) watchExit(c *container, task client.Task, exitc <-chan client.ExitStatus) {
	st := <-exitc
	if st.Error() != nil {
		if s.bgContext().Err() == nil {
			s.log.Warn("cri: wait for container exit", "container", c.rec.ID, "error", st.Error())
		}
		return
	}
	ctx, cancel := context.WithTimeout(nsContext(s.bgContext()), cleanupTimeout)
	defer cancel()
	reason := reasonError
	if st.ExitCode() == 0 {
		reason = reasonCompleted
	}
	c.mu.Lock()
	killing := c.killing
	c.mu.Unlock()
	if c.wasOOMKilled(st.ExitCode(), killing) {
		reason = reasonOOMKilled
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rec.Exited || c.removed {
		return
	}
	rec := c.rec
	rec.Exited, rec.ExitCode, rec.Reason, rec.FinishedAt = true, int32(st.ExitCode()), reason, st.ExitTime().UTC()
	if err := s.saveRecord(ctx, rec.ID, rec); err != nil {
		s.log.Error("cri: record container exit", "container", rec.ID, "error", err)
		return
	}
	c.rec = rec
	close(c.exited)
	if _, err := task.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
		s.log.Warn("cri: delete the task of an exited container", "container", rec.ID, "error", err)
	}
}

// StopContainer signals the container (its image's stop signal, else
// TERM), waits up to the timeout, then kills it. Stopping a stopped or
// removed container is no error.
func (s *Server) StopContainer(ctx context.Context, req *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	ctx = nsContext(ctx)
	c, err := s.containerByID(req.GetContainerId())
	if errdefs.IsNotFound(err) {
		return &runtimeapi.StopContainerResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := s.stopContainer(ctx, c, time.Duration(req.GetTimeout())*time.Second); err != nil {
		return nil, err
	}
	return &runtimeapi.StopContainerResponse{}, nil
}

// stopContainer stops c's task if it runs: the stop signal, then KILL
// after timeout. It returns once the exit is recorded.
func (s *Server) stopContainer(ctx context.Context, c *container, timeout time.Duration) error {
	c.mu.Lock()
	running := !c.rec.StartedAt.IsZero() && !c.rec.Exited && !c.removed
	id := c.rec.ID
	c.mu.Unlock()
	if !running {
		return nil
	}
	ctr, err := s.client.LoadContainer(ctx, id)
	if err != nil {
		return err
	}
	task, err := ctr.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return s.waitExited(ctx, c)
	}
	if err != nil {
		return err
	}
	if timeout > 0 {
		sig := syscall.SIGTERM
		if name := s.stopSignal(ctx, c); name != "" {
			if n, ok := signalByName(name); ok {
				sig = n
			}
		}
		if err := task.Kill(ctx, sig); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("signal container %s: %w", id, err)
		}
		select {
		case <-c.exited:
			return nil
		case <-time.After(timeout):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	c.mu.Lock()
	c.killing = true
	c.mu.Unlock()
	if err := task.Kill(ctx, syscall.SIGKILL, client.WithKillAll); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsFailedPrecondition(err) {
		return fmt.Errorf("kill container %s: %w", id, err)
	}
	return s.waitExited(ctx, c)
}

// waitExited waits until c's exit is recorded; ctx bounds it.
func (s *Server) waitExited(ctx context.Context, c *container) error {
	select {
	case <-c.exited:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("container %s: wait for its exit: %w", c.rec.ID, ctx.Err())
	}
}

// stopSignal is the stop signal of c's image config, if any.
func (s *Server) stopSignal(ctx context.Context, c *container) string {
	if c.config.GetStopSignal() != runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
		return c.config.GetStopSignal().String()
	}
	ci, err := s.findImage(ctx, c.rec.ImageID)
	if err != nil {
		return ""
	}
	return ci.config.Config.StopSignal
}

// signalByName parses "SIGTERM", "TERM", the CRI's "SIGNAL_SIGTERM" or a
// number.
func signalByName(name string) (syscall.Signal, bool) {
	name = strings.TrimPrefix(strings.TrimPrefix(strings.ToUpper(name), "SIGNAL_"), "SIG")
	if n, err := strconv.Atoi(name); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), true
	}
	for n := syscall.Signal(1); n < 65; n++ {
		if strings.TrimPrefix(strings.ToUpper(unixSignalName(n)), "SIG") == name {
			return n, true
		}
	}
	return 0, false
}

// RemoveContainer removes a container, killing it first if it runs.
// Removing a removed container is no error.
func (s *Server) RemoveContainer(ctx context.Context, req *runtimeapi.RemoveContainerRequest) (*runtimeapi.RemoveContainerResponse, error) {
	ctx = nsContext(ctx)
	c, err := s.containerByID(req.GetContainerId())
	if errdefs.IsNotFound(err) {
		return &runtimeapi.RemoveContainerResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := s.removeContainer(ctx, c); err != nil {
		return nil, err
	}
	return &runtimeapi.RemoveContainerResponse{}, nil
}

func (s *Server) removeContainer(ctx context.Context, c *container) error {
	if err := s.stopContainer(ctx, c, 0); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removed {
		return nil
	}
	if err := s.deleteTask(ctx, c.rec.ID); err != nil {
		return err
	}
	if len(c.rec.ImageMounts) > 0 {
		if err := s.releaseImageMounts(ctx, c.rec.ID); err != nil {
			return err
		}
	}
	if err := s.deleteContainer(ctx, c.rec.ID); err != nil {
		return err
	}
	if err := os.Remove(s.stdinFIFO(c.rec.ID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("remove a container's stdin FIFO", "container", c.rec.ID, "error", err)
	}
	for _, p := range []string{s.outputPath(c.rec.ID), s.outputPath(c.rec.ID) + rotatedSuffix} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("remove a container's output", "container", c.rec.ID, "error", err)
		}
	}
	if err := os.RemoveAll(s.volumesDir(c.rec.ID)); err != nil {
		s.log.Warn("remove a container's image volumes", "container", c.rec.ID, "error", err)
	}
	c.removed = true
	s.mu.Lock()
	delete(s.containers, c.rec.ID)
	sb := s.sandboxes[c.rec.SandboxID]
	s.mu.Unlock()
	if sb != nil {
		s.releaseName(containerName(c.config.GetMetadata(), sb.config.GetMetadata()), c.rec.ID)
	}
	return nil
}

// containerState is the CRI state of a record.
func containerState(rec containerRecord) runtimeapi.ContainerState {
	switch {
	case rec.Exited:
		return runtimeapi.ContainerState_CONTAINER_EXITED
	case rec.Starting:
		return runtimeapi.ContainerState_CONTAINER_UNKNOWN
	case !rec.StartedAt.IsZero():
		return runtimeapi.ContainerState_CONTAINER_RUNNING
	}
	return runtimeapi.ContainerState_CONTAINER_CREATED
}

// unixNano is t in nanoseconds, 0 for the zero time.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// ContainerStatus reports a container.
func (s *Server) ContainerStatus(ctx context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	c, err := s.containerByID(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ContainerStatusResponse{Status: containerStatus(c)}
	if req.GetVerbose() {
		resp.Info = map[string]string{"info": fmt.Sprintf(`{"sandboxID":%q}`, c.rec.SandboxID)}
	}
	return resp, nil
}

// containerStatus is the CRI status of c.
func containerStatus(c *container) *runtimeapi.ContainerStatus {
	c.mu.Lock()
	rec := c.rec
	c.mu.Unlock()
	cfg := c.config
	st := &runtimeapi.ContainerStatus{
		Id: rec.ID, Metadata: cfg.GetMetadata(), State: containerState(rec),
		CreatedAt: unixNano(rec.CreatedAt), StartedAt: unixNano(rec.StartedAt), FinishedAt: unixNano(rec.FinishedAt),
		ExitCode: rec.ExitCode, Reason: rec.Reason, Message: rec.Message,
		Image: &runtimeapi.ImageSpec{Image: rec.ImageName}, ImageRef: rec.ImageID, ImageId: rec.ImageID,
		Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(), Mounts: imageMountStatus(cfg.GetMounts(), rec.ImageMounts), LogPath: rec.LogPath,
	}
	if r := cfg.GetLinux().GetResources(); r != nil {
		st.Resources = &runtimeapi.ContainerResources{Linux: r}
	}
	return st
}

// ListContainers lists the containers that match the filter: id (or a
// prefix), state, pod and labels.
func (s *Server) ListContainers(ctx context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	f := req.GetFilter()
	s.mu.Lock()
	list := slices.Collect(maps.Values(s.containers))
	s.mu.Unlock()
	resp := &runtimeapi.ListContainersResponse{}
	for _, c := range list {
		c.mu.Lock()
		rec := c.rec
		c.mu.Unlock()
		state := containerState(rec)
		switch {
		case f.GetId() != "" && !strings.HasPrefix(rec.ID, f.GetId()),
			f.GetPodSandboxId() != "" && !strings.HasPrefix(rec.SandboxID, f.GetPodSandboxId()),
			f.GetState() != nil && f.GetState().GetState() != state,
			!matchLabels(f.GetLabelSelector(), c.config.GetLabels()):
			continue
		}
		resp.Containers = append(resp.Containers, &runtimeapi.Container{
			Id: rec.ID, PodSandboxId: rec.SandboxID, Metadata: c.config.GetMetadata(),
			Image: &runtimeapi.ImageSpec{Image: rec.ImageName}, ImageRef: rec.ImageID, ImageId: rec.ImageID,
			State: state, CreatedAt: unixNano(rec.CreatedAt), Labels: c.config.GetLabels(), Annotations: c.config.GetAnnotations(),
		})
	}
	slices.SortFunc(resp.Containers, func(a, b *runtimeapi.Container) int { return cmp.Compare(b.CreatedAt, a.CreatedAt) })
	return resp, nil
}

// UpdateContainerResources changes a running container's CPU and memory
// limits.
func (s *Server) UpdateContainerResources(ctx context.Context, req *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	ctx = nsContext(ctx)
	c, err := s.containerByID(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	r := req.GetLinux()
	if r == nil {
		return &runtimeapi.UpdateContainerResourcesResponse{}, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rec.Exited || c.removed {
		return nil, fmt.Errorf("container %s is not running: %w", c.rec.ID, errdefs.ErrFailedPrecondition)
	}
	ctr, err := s.client.LoadContainer(ctx, c.rec.ID)
	if err != nil {
		return nil, err
	}
	res := toSpecResources(r)
	spec, err := ctr.Spec(ctx)
	if err != nil {
		return nil, err
	}
	if spec.Linux.Resources == nil {
		spec.Linux.Resources = &specs.LinuxResources{}
	}
	spec.Linux.Resources.CPU, spec.Linux.Resources.Memory = res.CPU, res.Memory
	if err := ctr.Update(ctx, client.WithSpec(spec)); err != nil {
		return nil, err
	}
	if c.rec.StartedAt.IsZero() {
		return &runtimeapi.UpdateContainerResourcesResponse{}, nil
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return nil, err
	}
	if err := task.Update(ctx, client.WithResources(res)); err != nil {
		return nil, err
	}
	return &runtimeapi.UpdateContainerResourcesResponse{}, nil
}
