package cri

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/cri/streaming"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/io/cio"
)

// ServeStreams starts the streaming server (cfg.Streaming) that the URLs
// of Exec, Attach and PortForward point to; Close stops it. Until it is
// called, those calls fail with Unavailable.
func (s *Server) ServeStreams() error {
	rt := &streaming.Runtime{
		Client:     s.client,
		Namespace:  Namespace,
		FIFODir:    filepath.Join(s.cfg.StateDir, "fifo"),
		PodNetNS:   s.podNetNS,
		Attachable: s.attachable,
	}
	ss, err := streaming.New(s.cfg.Streaming, rt)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.streams = ss
	s.mu.Unlock()
	go func() {
		if err := ss.Serve(); err != nil {
			s.log.Error("stream server", "error", err)
		}
	}()
	context.AfterFunc(s.bg, func() { ss.Close() })
	s.log.Info("CRI stream server serving", "address", ss.Addr().String())
	return nil
}

// streamServer returns the streaming server, or an Unavailable error.
func (s *Server) streamServer() (*streaming.Server, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.streams == nil {
		return nil, fmt.Errorf("the stream server is not serving: %w", errdefs.ErrUnavailable)
	}
	return s.streams, nil
}

// runningContainer returns the container id names, which must be running.
func (s *Server) runningContainer(id string) (*container, error) {
	c, err := s.containerByID(id)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	running := containerState(c.rec) == runtimeapi.ContainerState_CONTAINER_RUNNING
	c.mu.Unlock()
	if !running {
		return nil, fmt.Errorf("container %s is not running: %w", c.rec.ID, errdefs.ErrFailedPrecondition)
	}
	return c, nil
}

// Exec returns the URL of a stream that runs a command in a running
// container.
func (s *Server) Exec(_ context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	if len(req.GetCmd()) == 0 || req.GetCmd()[0] == "" {
		return nil, fmt.Errorf("exec: a command is required: %w", errdefs.ErrInvalidArgument)
	}
	ss, err := s.streamServer()
	if err != nil {
		return nil, err
	}
	c, err := s.runningContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	r := &runtimeapi.ExecRequest{
		ContainerId: c.rec.ID, Cmd: req.GetCmd(), Tty: req.GetTty(),
		Stdin: req.GetStdin(), Stdout: req.GetStdout(), Stderr: req.GetStderr(),
	}
	return ss.GetExec(r)
}

// Attach returns the URL of a stream attached to a running container's
// main process.
func (s *Server) Attach(_ context.Context, req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	ss, err := s.streamServer()
	if err != nil {
		return nil, err
	}
	c, err := s.runningContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if req.GetStdin() && !c.config.GetStdin() {
		return nil, fmt.Errorf("attach to %s: stdin asked for, but the container was created without stdin: %w", c.rec.ID, errdefs.ErrInvalidArgument)
	}
	r := &runtimeapi.AttachRequest{
		ContainerId: c.rec.ID, Tty: c.config.GetTty(),
		Stdin: req.GetStdin(), Stdout: req.GetStdout(), Stderr: req.GetStderr() && !c.config.GetTty(),
	}
	return ss.GetAttach(r)
}

// PortForward returns the URL of a stream that forwards ports into a
// running pod's network namespace.
func (s *Server) PortForward(_ context.Context, req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	ss, err := s.streamServer()
	if err != nil {
		return nil, err
	}
	sb, err := s.sandboxByID(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	sb.mu.Lock()
	stopped := sb.rec.Stopped
	sb.mu.Unlock()
	if stopped {
		return nil, fmt.Errorf("pod sandbox %s is not ready: %w", sb.rec.ID, errdefs.ErrFailedPrecondition)
	}
	for _, p := range req.GetPort() {
		if p <= 0 || p > 65535 {
			return nil, fmt.Errorf("port forward: port %d: must be 1 to 65535: %w", p, errdefs.ErrInvalidArgument)
		}
	}
	return ss.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: sb.rec.ID, Port: req.GetPort()})
}

// podNetNS returns the network namespace of a pod's sandbox: its pinned
// one, "" for the host's, or the sandbox process's own.
func (s *Server) podNetNS(ctx context.Context, id string) (string, error) {
	sb, err := s.sandboxByID(id)
	if err != nil {
		return "", err
	}
	sb.mu.Lock()
	rec := sb.rec
	sb.mu.Unlock()
	if rec.NetNS != "" {
		return rec.NetNS, nil
	}
	if sb.config.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE {
		return "", nil
	}
	task, _, err := s.sandboxTask(nsContext(ctx), rec.ID)
	if err != nil {
		return "", fmt.Errorf("pod sandbox %s: %w", rec.ID, err)
	}
	return fmt.Sprintf("/proc/%d/ns/net", task.Pid()), nil
}

// attachable returns where a container's output and input are.
func (s *Server) attachable(_ context.Context, id string) (streaming.AttachTarget, error) {
	c, err := s.containerByID(id)
	if err != nil {
		return streaming.AttachTarget{}, err
	}
	t := streaming.AttachTarget{LogPath: c.rec.LogPath, StdinOnce: c.config.GetStdinOnce()}
	if t.LogPath == "" {
		// A container started before berthd kept an output of its own
		// has none: no file, no output to attach to.
		if _, err := os.Stat(s.outputPath(c.rec.ID)); err == nil {
			t.LogPath = s.outputPath(c.rec.ID)
		}
	}
	if c.config.GetStdin() {
		t.StdinFIFO = s.stdinFIFO(c.rec.ID)
	}
	return t, nil
}

// containerIO is the stdio of a container's task: its CRI log, and for a
// container with stdin a FIFO the shim holds, which Attach writes to. A
// container created without a log path gets an output file of its own
// (outputPath), in the same format, so that Attach has output to follow
// and the output does not depend on berthd being up to read it.
func (s *Server) containerIO(c *container) cio.Creator {
	out := c.rec.LogPath
	if out == "" {
		out = s.outputPath(c.rec.ID)
	}
	create := cio.CRILog(out)
	if c.config.GetStdin() {
		create = cio.CRILogStdin(out, s.stdinFIFO(c.rec.ID), c.config.GetTty())
	}
	return func(id string) (cio.IO, error) {
		if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
			return nil, fmt.Errorf("container output: %w", err)
		}
		return create(id)
	}
}

// stdinFIFO is the path of the FIFO a container with stdin reads it from.
func (s *Server) stdinFIFO(id string) string {
	return filepath.Join(s.cfg.StateDir, "stdin", id)
}

// outputPath is the output file of container id when it was created
// without a CRI log path. It is berthd's, not the kubelet's: bounded by
// rotateOutputs, removed with the container.
func (s *Server) outputPath(id string) string {
	return filepath.Join(s.cfg.StateDir, "output", id+".log")
}
