package client

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/leases"
	"github.com/berthrt/berth/namespaces"
	containersv1 "github.com/berthrt/berth/proto/containers/v1"
	contentv1 "github.com/berthrt/berth/proto/content/v1"
	eventsv1 "github.com/berthrt/berth/proto/events/v1"
	introspectionv1 "github.com/berthrt/berth/proto/introspection/v1"
	leasesv1 "github.com/berthrt/berth/proto/leases/v1"
	snapshotsv1 "github.com/berthrt/berth/proto/snapshots/v1"
	tasksv1 "github.com/berthrt/berth/proto/tasks/v1"
	typesv1 "github.com/berthrt/berth/proto/types/v1"
	versionv1 "github.com/berthrt/berth/proto/version/v1"
	"github.com/berthrt/berth/shimapi"
)

// fakeDaemon serves fake services on a temp socket, in process, with the
// daemon's error edge.
type fakeDaemon struct {
	address    string
	containers *fakeContainers
	tasks      *fakeTasks
	events     *fakeEvents
	content    *fakeContent
	leases     *fakeLeases
	snapshots  *fakeSnapshots
	rpcs       *fakeRPCs
}

func startFake(t *testing.T) *fakeDaemon {
	t.Helper()
	f := &fakeDaemon{
		address:   filepath.Join(t.TempDir(), "berth.sock"),
		tasks:     newFakeTasks(),
		events:    &fakeEvents{ended: make(chan struct{}, 8)},
		leases:    &fakeLeases{live: map[string]bool{}},
		snapshots: &fakeSnapshots{mounts: map[string][]*typesv1.Mount{}},
		rpcs:      newFakeRPCs(),
	}
	f.containers = &fakeContainers{byID: map[string]*containersv1.Container{}, snapshots: f.snapshots}
	f.content = &fakeContent{blobs: map[string][]byte{}, rpcs: f.rpcs}
	srv, err := ttrpc.NewServer(ttrpc.WithChainUnaryServerInterceptor(errdefs.ServerErrors, f.rpcs.intercept))
	if err != nil {
		t.Fatal(err)
	}
	containersv1.RegisterContainersService(srv, f.containers)
	tasksv1.RegisterTasksService(srv, f.tasks)
	eventsv1.RegisterEventsService(srv, f.events)
	contentv1.RegisterContentService(srv, f.content)
	leasesv1.RegisterLeasesService(srv, f.leases)
	snapshotsv1.RegisterSnapshotsService(srv, f.snapshots)
	versionv1.RegisterVersionService(srv, fakeVersion{})
	introspectionv1.RegisterIntrospectionService(srv, fakeIntrospection{})
	introspectionv1.RegisterHealthService(srv, fakeIntrospection{})
	l, err := net.Listen("unix", f.address)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(context.Background(), l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		srv.Close()
	})
	return f
}

// connect starts a fake daemon and a client of it.
func connect(t *testing.T, opts ...Opt) (*Client, *fakeDaemon) {
	t.Helper()
	f := startFake(t)
	c, err := New(f.address, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, f
}

// fakeContainers keeps containers in memory, ignoring namespaces but
// recording the namespace of the last call.
type fakeContainers struct {
	mu     sync.Mutex
	byID   map[string]*containersv1.Container
	lastNS string
	masks  [][]string
	gets   int // Get calls
	// older replies as a daemon that predates remove_snapshot and
	// Create's snapshot: Delete deletes the record and leaves the
	// snapshot, Create stores the container alone, and neither reply
	// says otherwise.
	older bool
	// snapshots makes the snapshot a Create asks for, as the daemon's
	// containers service does in the same transaction.
	snapshots *fakeSnapshots
	// createLeases are the leases (leases.FromContext) that the Create
	// calls came under, "" for none.
	createLeases []string
}

func (f *fakeContainers) record(ctx context.Context) {
	ns, _ := namespaces.Namespace(ctx)
	f.mu.Lock()
	f.lastNS = ns
	f.mu.Unlock()
}

func (f *fakeContainers) namespace() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastNS
}

func (f *fakeContainers) Get(ctx context.Context, r *containersv1.GetContainerRequest) (*containersv1.GetContainerResponse, error) {
	f.record(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets++
	c, ok := f.byID[r.Id]
	if !ok {
		return nil, fmt.Errorf("container %q: %w", r.Id, errdefs.ErrNotFound)
	}
	return &containersv1.GetContainerResponse{Container: c}, nil
}

func (f *fakeContainers) List(ctx context.Context, r *containersv1.ListContainersRequest) (*containersv1.ListContainersResponse, error) {
	f.record(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*containersv1.Container
	for _, c := range f.byID {
		out = append(out, c)
	}
	return &containersv1.ListContainersResponse{Containers: out}, nil
}

// ListStream sends List's reply as one message, in the namespace the
// request names (a stream carries no metadata).
func (f *fakeContainers) ListStream(ctx context.Context, r *containersv1.ListContainersRequest, stream containersv1.Containers_ListStreamServer) error {
	if r.Namespace != "" {
		ctx = namespaces.WithNamespace(ctx, r.Namespace)
	}
	resp, err := f.List(ctx, r)
	if err != nil {
		return err
	}
	return stream.Send(resp)
}

func (f *fakeContainers) Create(ctx context.Context, r *containersv1.CreateContainerRequest) (*containersv1.CreateContainerResponse, error) {
	f.record(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.byID[r.Container.Id]; ok {
		return nil, fmt.Errorf("container %q: %w", r.Container.Id, errdefs.ErrAlreadyExists)
	}
	lease, _ := leases.FromContext(ctx)
	f.createLeases = append(f.createLeases, lease)
	resp := &containersv1.CreateContainerResponse{}
	if snap := r.GetSnapshot(); snap != nil && !f.older {
		ms, err := f.snapshots.create(r.Container.Snapshotter, r.Container.SnapshotKey, snap.GetParent(), snap.GetView())
		if err != nil {
			return nil, err
		}
		resp.Mounts, resp.SnapshotCreated = ms, true
	}
	r.Container.CreatedAt = timestamppb.Now()
	f.byID[r.Container.Id] = r.Container
	resp.Container = r.Container
	return resp, nil
}

// Update implements "labels.<key>" masks and whole replacement.
func (f *fakeContainers) Update(ctx context.Context, r *containersv1.UpdateContainerRequest) (*containersv1.UpdateContainerResponse, error) {
	f.record(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.byID[r.Container.Id]
	if !ok {
		return nil, fmt.Errorf("container %q: %w", r.Container.Id, errdefs.ErrNotFound)
	}
	paths := r.GetUpdateMask().GetPaths()
	f.masks = append(f.masks, paths)
	if len(paths) == 0 {
		f.byID[c.Id] = r.Container
		return &containersv1.UpdateContainerResponse{Container: r.Container}, nil
	}
	if c.Labels == nil {
		c.Labels = map[string]string{}
	}
	for _, p := range paths {
		k := p[len("labels."):]
		if v, ok := r.Container.Labels[k]; ok {
			c.Labels[k] = v
		} else {
			delete(c.Labels, k)
		}
	}
	return &containersv1.UpdateContainerResponse{Container: c}, nil
}

func (f *fakeContainers) Delete(ctx context.Context, r *containersv1.DeleteContainerRequest) (*containersv1.DeleteContainerResponse, error) {
	f.record(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.byID[r.Id]; !ok {
		return nil, fmt.Errorf("container %q: %w", r.Id, errdefs.ErrNotFound)
	}
	delete(f.byID, r.Id)
	return &containersv1.DeleteContainerResponse{SnapshotRemoved: r.GetRemoveSnapshot() && !f.older}, nil
}

// fakeProc is one process of the fake tasks service.
type fakeProc struct {
	stdio  *shimapi.Stdio
	pid    uint32
	status shimapi.Status
	code   uint32
	exited chan struct{} // closed at exit
}

type fakeTasks struct {
	mu       sync.Mutex
	procs    map[string]*fakeProc // by container id + "/" + exec id
	kills    []*tasksv1.KillRequest
	requests []any
	// onCreate runs when a process is created (Create or Exec), like the
	// shim opening the process's stdio.
	onCreate func(key string, stdio *shimapi.Stdio)
}

func newFakeTasks() *fakeTasks {
	return &fakeTasks{procs: map[string]*fakeProc{}}
}

func key(id, execID string) string { return id + "/" + execID }

func (f *fakeTasks) proc(id, execID string) (*fakeProc, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.procs[key(id, execID)]
	if !ok {
		return nil, fmt.Errorf("process %s: %w", key(id, execID), errdefs.ErrNotFound)
	}
	return p, nil
}

// exit makes a process exit with code.
func (f *fakeTasks) exit(id, execID string, code uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.procs[key(id, execID)]
	p.status, p.code = shimapi.Status_STATUS_STOPPED, code
	close(p.exited)
}

func (f *fakeTasks) add(id, execID string, stdio *shimapi.Stdio, pid uint32) {
	f.mu.Lock()
	f.procs[key(id, execID)] = &fakeProc{stdio: stdio, pid: pid, status: shimapi.Status_STATUS_CREATED, exited: make(chan struct{})}
	hook := f.onCreate
	f.mu.Unlock()
	if hook != nil {
		hook(key(id, execID), stdio)
	}
}

func (f *fakeTasks) record(r any) {
	f.mu.Lock()
	f.requests = append(f.requests, r)
	f.mu.Unlock()
}

func (f *fakeTasks) Create(ctx context.Context, r *tasksv1.CreateTaskRequest) (*tasksv1.CreateTaskResponse, error) {
	f.record(r)
	if _, err := f.proc(r.ContainerId, ""); err == nil {
		return nil, fmt.Errorf("task %q: %w", r.ContainerId, errdefs.ErrAlreadyExists)
	}
	f.add(r.ContainerId, "", r.Stdio, 4242)
	return &tasksv1.CreateTaskResponse{ContainerId: r.ContainerId, Pid: 4242}, nil
}

func (f *fakeTasks) Start(ctx context.Context, r *tasksv1.StartRequest) (*tasksv1.StartResponse, error) {
	p, err := f.proc(r.ContainerId, r.ExecId)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	p.status = shimapi.Status_STATUS_RUNNING
	if p.pid == 0 {
		p.pid = 5000
	}
	return &tasksv1.StartResponse{Pid: p.pid}, nil
}

func (f *fakeTasks) deleteProc(id, execID string) (*tasksv1.DeleteResponse, error) {
	p, err := f.proc(id, execID)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if p.status == shimapi.Status_STATUS_RUNNING {
		return nil, fmt.Errorf("%s is running: %w", key(id, execID), errdefs.ErrFailedPrecondition)
	}
	delete(f.procs, key(id, execID))
	return &tasksv1.DeleteResponse{Id: id, Pid: p.pid, ExitStatus: p.code, ExitedAt: timestamppb.New(time.Unix(1700000000, 0))}, nil
}

func (f *fakeTasks) Delete(ctx context.Context, r *tasksv1.DeleteTaskRequest) (*tasksv1.DeleteResponse, error) {
	return f.deleteProc(r.ContainerId, "")
}

func (f *fakeTasks) DeleteProcess(ctx context.Context, r *tasksv1.DeleteProcessRequest) (*tasksv1.DeleteResponse, error) {
	return f.deleteProc(r.ContainerId, r.ExecId)
}

func (f *fakeTasks) Get(ctx context.Context, r *tasksv1.GetRequest) (*tasksv1.GetResponse, error) {
	p, err := f.proc(r.ContainerId, r.ExecId)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return &tasksv1.GetResponse{Process: &tasksv1.Process{
		ContainerId: r.ContainerId, ExecId: r.ExecId, Pid: p.pid, Status: p.status, Stdio: p.stdio, ExitStatus: p.code,
	}}, nil
}

func (f *fakeTasks) List(ctx context.Context, r *tasksv1.ListTasksRequest) (*tasksv1.ListTasksResponse, error) {
	return nil, errdefs.ErrNotImplemented
}

// Kill with SIGKILL makes the process exit with 137.
func (f *fakeTasks) Kill(ctx context.Context, r *tasksv1.KillRequest) (*emptypb.Empty, error) {
	f.mu.Lock()
	f.kills = append(f.kills, r)
	f.mu.Unlock()
	if _, err := f.proc(r.ContainerId, r.ExecId); err != nil {
		return nil, err
	}
	if r.Signal == 9 {
		f.exit(r.ContainerId, r.ExecId, 137)
	}
	return &emptypb.Empty{}, nil
}

func (f *fakeTasks) Exec(ctx context.Context, r *tasksv1.ExecProcessRequest) (*emptypb.Empty, error) {
	f.record(r)
	if _, err := f.proc(r.ContainerId, r.ExecId); err == nil {
		return nil, fmt.Errorf("exec %q: %w", r.ExecId, errdefs.ErrAlreadyExists)
	}
	f.add(r.ContainerId, r.ExecId, r.Stdio, 0)
	return &emptypb.Empty{}, nil
}

func (f *fakeTasks) ResizePty(ctx context.Context, r *tasksv1.ResizePtyRequest) (*emptypb.Empty, error) {
	f.record(r)
	return &emptypb.Empty{}, nil
}

func (f *fakeTasks) CloseIO(ctx context.Context, r *tasksv1.CloseIORequest) (*emptypb.Empty, error) {
	f.record(r)
	return &emptypb.Empty{}, nil
}

func (f *fakeTasks) ReopenLog(ctx context.Context, r *tasksv1.ReopenLogRequest) (*emptypb.Empty, error) {
	f.record(r)
	return &emptypb.Empty{}, nil
}

func (f *fakeTasks) Pause(ctx context.Context, r *tasksv1.PauseTaskRequest) (*emptypb.Empty, error) {
	f.record(r)
	return &emptypb.Empty{}, nil
}

func (f *fakeTasks) Resume(ctx context.Context, r *tasksv1.ResumeTaskRequest) (*emptypb.Empty, error) {
	f.record(r)
	return &emptypb.Empty{}, nil
}

func (f *fakeTasks) ListPids(ctx context.Context, r *tasksv1.ListPidsRequest) (*tasksv1.ListPidsResponse, error) {
	return &tasksv1.ListPidsResponse{Processes: []*shimapi.ProcessInfo{{Pid: 4242}, {Pid: 5000, ExecId: "sh"}}}, nil
}

func (f *fakeTasks) Update(ctx context.Context, r *tasksv1.UpdateTaskRequest) (*emptypb.Empty, error) {
	f.record(r)
	return &emptypb.Empty{}, nil
}

func (f *fakeTasks) Metrics(ctx context.Context, r *tasksv1.MetricsRequest) (*tasksv1.MetricsResponse, error) {
	f.record(r)
	return &tasksv1.MetricsResponse{Metrics: []*tasksv1.TaskMetrics{
		{ContainerId: "other", Metrics: &shimapi.Metrics{PidsCurrent: 9}},
		{ContainerId: "c1", Timestamp: timestamppb.Now(), Metrics: &shimapi.Metrics{PidsCurrent: 2}},
	}}, nil
}

// Wait blocks until the process exits or the call is cancelled.
func (f *fakeTasks) Wait(ctx context.Context, r *tasksv1.WaitRequest) (*tasksv1.WaitResponse, error) {
	p, err := f.proc(r.ContainerId, r.ExecId)
	if err != nil {
		return nil, err
	}
	select {
	case <-p.exited:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return &tasksv1.WaitResponse{ExitStatus: p.code, ExitedAt: timestamppb.New(time.Unix(1700000000, 0))}, nil
}

func (f *fakeTasks) requestsOf(match func(any) bool) []any {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []any
	for _, r := range f.requests {
		if match(r) {
			out = append(out, r)
		}
	}
	return out
}

// fakeEvents streams the envelopes it is given, then blocks until the
// stream's context ends, and reports that on ended.
type fakeEvents struct {
	mu      sync.Mutex
	send    []*eventsv1.Envelope
	fail    error
	filters []string
	ended   chan struct{}
}

func (f *fakeEvents) Publish(context.Context, *eventsv1.PublishRequest) (*emptypb.Empty, error) {
	return nil, errdefs.ErrNotImplemented
}

func (f *fakeEvents) Forward(context.Context, *eventsv1.ForwardRequest) (*emptypb.Empty, error) {
	return nil, errdefs.ErrNotImplemented
}

func (f *fakeEvents) Subscribe(ctx context.Context, r *eventsv1.SubscribeRequest, s eventsv1.Events_SubscribeServer) error {
	defer func() { f.ended <- struct{}{} }()
	f.mu.Lock()
	f.filters = r.Filters
	send, fail := f.send, f.fail
	f.mu.Unlock()
	for _, e := range send {
		if err := s.Send(e); err != nil {
			return err
		}
	}
	if fail != nil {
		return errdefs.ToTTRPC(fail)
	}
	<-ctx.Done()
	return ctx.Err()
}

type fakeVersion struct{}

func (fakeVersion) Version(context.Context, *emptypb.Empty) (*versionv1.VersionResponse, error) {
	return &versionv1.VersionResponse{Version: "0.1.0", Revision: "abc", GoVersion: "go1.26"}, nil
}

type fakeIntrospection struct{}

// fakeDefaultSnapshotter is the fake daemon's default snapshotter.
const fakeDefaultSnapshotter = "fakefs"

// Services names the default snapshotter, whatever the filters.
func (fakeIntrospection) Services(context.Context, *introspectionv1.ServicesRequest) (*introspectionv1.ServicesResponse, error) {
	return &introspectionv1.ServicesResponse{Services: []*introspectionv1.Service{{Type: "berth.service.v1", Id: "snapshots", Exports: map[string]string{"default": fakeDefaultSnapshotter}}}}, nil
}

func (fakeIntrospection) Server(context.Context, *emptypb.Empty) (*introspectionv1.ServerResponse, error) {
	return &introspectionv1.ServerResponse{Uuid: "u-1", Pid: 7, StartedAt: timestamppb.New(time.Unix(1700000000, 0)), Root: "/var/lib/berth"}, nil
}

func (fakeIntrospection) Check(context.Context, *emptypb.Empty) (*introspectionv1.HealthResponse, error) {
	return &introspectionv1.HealthResponse{Status: introspectionv1.HealthResponse_RESTORING}, nil
}
