package cri

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/cri/cni"
	"github.com/berthrt/berth/cri/streaming"
	"github.com/berthrt/berth/namespaces"
	"github.com/berthrt/berth/version"
)

// Namespace is the berth namespace of every CRI object.
const Namespace = "k8s.io"

const (
	// runtimeName is what Version reports as the runtime's name.
	runtimeName = "berth"
	// kubeletAPIVersion is the version of the CRI that Version reports,
	// as the kubelet's own client sends it.
	kubeletAPIVersion = "0.1.0"
)

// Config is what a Server needs.
type Config struct {
	// Client reaches berthd's services in the same process.
	Client *client.Client
	// SandboxImage is the image of every pod's sandbox container; it is
	// reported pinned, so that the kubelet's image GC leaves it alone.
	SandboxImage string
	// StateDir holds what lives as long as the machine is up: each pod's
	// resolv.conf, hostname, hosts and /dev/shm, and exec FIFOs.
	StateDir string
	// ImageFSDir is the folder whose filesystem holds the snapshots, for
	// ImageFsInfo.
	ImageFSDir string
	// NetNSDir holds the pods' pinned network namespaces.
	NetNSDir string
	// Network wires pod networks through CNI; nil gives each pod a network
	// namespace with only its loopback device, and Status reports the
	// network not ready.
	Network *cni.Network
	// Streaming places the stream server of Exec, Attach and PortForward
	// (ServeStreams).
	Streaming streaming.Config
	Log       *slog.Logger
}

// Server serves the CRI RuntimeService and ImageService.
type Server struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer

	cfg    Config
	client *client.Client
	log    *slog.Logger
	images imageCache
	// bg lives as long as the server: exit watchers run under it.
	bg     context.Context
	cancel context.CancelFunc

	mu         sync.Mutex            // guards the maps below, never held across a daemon call
	sandboxes  map[string]*sandbox   // by id
	containers map[string]*container // by id
	names      map[string]string     // reserved name → the id holding it
	streams    *streaming.Server     // set once by ServeStreams
	events     eventHub              // GetContainerEvents' subscribers, fed by WatchEvents
	// loadExits are the containers whose exit Load recorded (they exited
	// while berthd was down); written by Load before WatchEvents, read by
	// the pump.
	loadExits []string
}

// New returns a Server over cfg; Load fills it from the daemon's records.
func New(cfg Config) (*Server, error) {
	if cfg.Client == nil || cfg.SandboxImage == "" || cfg.StateDir == "" || cfg.NetNSDir == "" {
		return nil, fmt.Errorf("cri: Client, SandboxImage, StateDir and NetNSDir are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	bg, cancel := context.WithCancel(context.Background())
	return &Server{
		cfg: cfg, client: cfg.Client, log: cfg.Log, bg: bg, cancel: cancel,
		images:     imageCache{byTarget: map[string]imageConfig{}},
		sandboxes:  map[string]*sandbox{},
		containers: map[string]*container{},
		names:      map[string]string{},
	}, nil
}

// Close stops the server's exit watchers; containers keep running, and a
// new Server's Load watches them again.
func (s *Server) Close() { s.cancel() }

// bgContext is the server's lifetime.
func (s *Server) bgContext() context.Context { return s.bg }

// nsContext puts the CRI's namespace on ctx.
func nsContext(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, Namespace)
}

// Version reports the runtime's name and version.
func (s *Server) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{
		Version:           kubeletAPIVersion,
		RuntimeName:       runtimeName,
		RuntimeVersion:    version.Version,
		RuntimeApiVersion: "v1",
	}, nil
}

// Status reports RuntimeReady (the daemon's services answer) and
// NetworkReady (a CNI network config is loaded).
func (s *Server) Status(ctx context.Context, req *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	runtime := &runtimeapi.RuntimeCondition{Type: runtimeapi.RuntimeReady, Status: true}
	if ok, err := s.client.IsServing(nsContext(ctx)); !ok {
		runtime.Status, runtime.Reason = false, "DaemonNotServing"
		runtime.Message = fmt.Sprintf("berthd's services do not answer: %v", err)
	}
	network := &runtimeapi.RuntimeCondition{Type: runtimeapi.NetworkReady, Status: true}
	switch {
	case s.cfg.Network == nil:
		network.Status, network.Reason, network.Message = false, "NetworkPluginNotReady", "no CNI network is configured"
	default:
		if err := s.cfg.Network.Status(); err != nil {
			network.Status, network.Reason, network.Message = false, "NetworkPluginNotReady", err.Error()
		}
	}
	resp := &runtimeapi.StatusResponse{Status: &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{runtime, network}}}
	if req.GetVerbose() {
		resp.Info = map[string]string{"sandboxImage": s.cfg.SandboxImage}
	}
	return resp, nil
}

// RuntimeConfig reports the cgroup driver: berth writes cgroupfs paths.
func (s *Server) RuntimeConfig(context.Context, *runtimeapi.RuntimeConfigRequest) (*runtimeapi.RuntimeConfigResponse, error) {
	return &runtimeapi.RuntimeConfigResponse{Linux: &runtimeapi.LinuxRuntimeConfiguration{CgroupDriver: runtimeapi.CgroupDriver_CGROUPFS}}, nil
}

// UpdateRuntimeConfig accepts the pod CIDR the kubelet sends; the CNI
// config, not the runtime, decides addresses here.
func (s *Server) UpdateRuntimeConfig(context.Context, *runtimeapi.UpdateRuntimeConfigRequest) (*runtimeapi.UpdateRuntimeConfigResponse, error) {
	return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
}
