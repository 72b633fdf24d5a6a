package task

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	runc "github.com/containerd/go-runc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/identifiers"
	"github.com/berthrt/berth/internal/jsonlog"
	"github.com/berthrt/berth/io/stdio"
	"github.com/berthrt/berth/shimapi"
	"github.com/berthrt/berth/task/internal/cgroup"
	"github.com/berthrt/berth/task/reaper"
)

// Config is what a shim is started with.
type Config struct {
	Namespace string
	ID        string
	Bundle    string // absolute path of the bundle folder
	Runtime   string // runtime binary: a name looked up in PATH, or a path
	// RuntimeRoot is the runtime's state folder (runc --root).
	RuntimeRoot string
	// RuntimeLog is the runtime's log file (runc --log); "" for
	// runtime.log in Bundle. A path relative to the process's working
	// folder resolves there in every runtime call: berth-shim, which works
	// in its bundle, passes shimapi.RuntimeLogName, since the daemon renames a
	// deleted task's bundle aside while the shim's deferred runtime delete
	// (release.go) is still to run, and runc fails at once, deleting
	// nothing, when it cannot open its log.
	RuntimeLog string
	Logger     *jsonlog.Logger // nil: Info and above to stderr
	// Shutdown is called once the service wants the shim to exit.
	Shutdown func()
}

// Service implements shimapi.TaskService for one container.
type Service struct {
	cfg     Config
	runtime *runc.Runc
	reaper  *reaper.Reaper
	events  *eventQueue
	log     *jsonlog.Logger

	mu      sync.Mutex              // guards the fields below
	init    *process                // nil until Create
	execs   map[string]*process     // by exec id
	running map[int]*process        // processes whose exit is still to come, by pid
	watches map[*exitWatch]struct{} // runtime calls that may start a process
	cg      cgroup.Cgroup           // nil until Create, or when unreadable, or once released
	// cleanupOnExit: release the container as soon as init exited (the
	// Create request's cleanup_on_exit; see release.go).
	cleanupOnExit bool
	// volatileWorkdirs are the work folders of the rootfs's overlays
	// mounted volatile, whose marks go after the unmount (volatile.go).
	volatileWorkdirs []string
	// deferRuntimeDelete: the eager release unmounts the rootfs and leaves
	// the runtime's delete to finish in the background (see release.go).
	deferRuntimeDelete bool

	shutdown sync.Once
	// rel is the release of the container after the init's exit: Delete's,
	// or the shim's own with cleanupOnExit, never both.
	rel release
	// runtimeDeleted is closed once a deferred runtime delete has ended;
	// nil until one starts. The shim does not exit before it is closed.
	runtimeDeleted chan struct{} // guarded by mu
	// hurry, closed by WaitRuntimeDelete, starts a deferred runtime
	// delete that still waits for the shutdown.
	hurry     chan struct{}
	hurryOnce sync.Once

	// life ends when the shim is told to shut down: runtime calls outlive
	// their caller (a half-made container is worse than a late answer)
	// but not the shim, so that a runtime that hangs is killed when the
	// daemon abandons the task instead of outliving its container.
	life    context.Context
	endLife context.CancelFunc
}

// NewService returns the task service; it starts handling exits from r.
func NewService(cfg Config, r *reaper.Reaper) (*Service, error) {
	if err := identifiers.Validate(cfg.ID); err != nil {
		return nil, fmt.Errorf("container id: %w", err)
	}
	if err := identifiers.Validate(cfg.Namespace); err != nil {
		return nil, fmt.Errorf("namespace: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = jsonlog.New(os.Stderr, jsonlog.LevelInfo)
	}
	if cfg.RuntimeLog == "" {
		cfg.RuntimeLog = filepath.Join(cfg.Bundle, shimapi.RuntimeLogName)
	}
	s := &Service{
		cfg: cfg,
		runtime: &runc.Runc{
			Command:   cfg.Runtime,
			Root:      cfg.RuntimeRoot,
			Log:       cfg.RuntimeLog,
			LogFormat: runc.JSON,
			// No parent-death signal: the container must outlive the shim.
			// Each call leads its own process group, so that ending a
			// call (see life) also ends what the runtime started, such as
			// a wrapper's runtime; the reaper signals the group only while
			// the call runs (see reaper.Reaper).
			Setpgid: true,
		},
		reaper:  r,
		events:  newEventQueue(DefaultEventQueueMax),
		hurry:   make(chan struct{}),
		log:     cfg.Logger,
		execs:   make(map[string]*process),
		running: make(map[int]*process),
		watches: make(map[*exitWatch]struct{}),
	}
	s.life, s.endLife = context.WithCancel(context.Background())
	sub := r.Subscribe()
	go s.handleExits(sub)
	return s, nil
}

// lookup returns the process for an exec id ("" for init).
func (s *Service) lookup(id, execID string) (*process, error) {
	if id != s.cfg.ID {
		return nil, fmt.Errorf("container %q: this shim serves %q: %w", id, s.cfg.ID, errdefs.ErrNotFound)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.init == nil {
		return nil, fmt.Errorf("container %q: not created: %w", id, errdefs.ErrNotFound)
	}
	if execID == "" {
		return s.init, nil
	}
	p, ok := s.execs[execID]
	if !ok {
		return nil, fmt.Errorf("exec %q in container %q: %w", execID, id, errdefs.ErrNotFound)
	}
	return p, nil
}

// Start implements shimapi.TaskService.
func (s *Service) Start(ctx context.Context, req *shimapi.StartRequest) (*shimapi.StartResponse, error) {
	p, err := s.lookup(req.Id, req.ExecId)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.detach(ctx)
	defer cancel()
	if req.ExecId != "" {
		if st := s.init.Status(); st != Running {
			return nil, fmt.Errorf("start exec %q: container is %s: %w", req.ExecId, st, errdefs.ErrFailedPrecondition)
		}
	}
	pid, early, err := p.start(ctx)
	if err != nil {
		return nil, err
	}
	if early != nil {
		defer s.exitRecorded(p, *early) // after the start event
	}
	if req.ExecId == "" {
		s.events.publish(&shimapi.TaskStart{ContainerId: s.cfg.ID, Pid: uint32(pid)})
	} else {
		s.events.publish(&shimapi.TaskExecStarted{ContainerId: s.cfg.ID, ExecId: req.ExecId, Pid: uint32(pid)})
	}
	return &shimapi.StartResponse{Pid: uint32(pid)}, nil
}

// State implements shimapi.TaskService.
func (s *Service) State(ctx context.Context, req *shimapi.StateRequest) (*shimapi.StateResponse, error) {
	p, err := s.lookup(req.Id, req.ExecId)
	if err != nil {
		return nil, err
	}
	pid, st, exit := p.snapshot()
	if st == Deleted {
		return nil, fmt.Errorf("process %s: deleted: %w", p.name, errdefs.ErrNotFound)
	}
	c := p.io.Config()
	resp := &shimapi.StateResponse{
		Id: s.cfg.ID, ExecId: req.ExecId, Bundle: s.cfg.Bundle, Pid: uint32(pid), Status: st.API(),
		Stdio: &shimapi.Stdio{Stdin: c.Stdin, Stdout: c.Stdout, Stderr: c.Stderr, Terminal: c.Terminal},
	}
	if st == Stopped {
		resp.ExitStatus = uint32(exit.status)
		resp.ExitedAt = timestamppb.New(exit.at)
	}
	return resp, nil
}

// Kill implements shimapi.TaskService.
func (s *Service) Kill(ctx context.Context, req *shimapi.KillRequest) (*shimapi.Empty, error) {
	if req.All && req.ExecId != "" {
		return nil, fmt.Errorf("kill: all is for the init process only: %w", errdefs.ErrInvalidArgument)
	}
	if req.Signal == 0 || req.Signal > 64 {
		return nil, fmt.Errorf("kill: signal %d out of range 1-64: %w", req.Signal, errdefs.ErrInvalidArgument)
	}
	p, err := s.lookup(req.Id, req.ExecId)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.detach(ctx)
	defer cancel()
	if err := p.kill(ctx, int(req.Signal), req.All); err != nil {
		return nil, err
	}
	return &shimapi.Empty{}, nil
}

// Wait implements shimapi.TaskService.
func (s *Service) Wait(ctx context.Context, req *shimapi.WaitRequest) (*shimapi.WaitResponse, error) {
	p, err := s.lookup(req.Id, req.ExecId)
	if err != nil {
		return nil, err
	}
	e, err := p.wait(ctx)
	if err != nil {
		return nil, err
	}
	return &shimapi.WaitResponse{ExitStatus: uint32(e.status), ExitedAt: timestamppb.New(e.at)}, nil
}

// Delete implements shimapi.TaskService.
func (s *Service) Delete(ctx context.Context, req *shimapi.DeleteRequest) (*shimapi.DeleteResponse, error) {
	p, err := s.lookup(req.Id, req.ExecId)
	if err != nil {
		return nil, err
	}
	if req.ExecId == "" {
		if live := s.liveExecs(); len(live) > 0 {
			return nil, fmt.Errorf("delete container %q: exec processes %v still running: %w", req.Id, live, errdefs.ErrFailedPrecondition)
		}
		// A release after the exit that still runs is waited for here,
		// bounded by the caller; the delete below then finds it done.
		if err := s.rel.wait(ctx); err != nil {
			return nil, err
		}
	}
	ctx, cancel := s.detach(ctx)
	defer cancel()
	pid, exit, err := p.delete(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if req.ExecId != "" {
		delete(s.execs, req.ExecId)
	}
	s.mu.Unlock()
	s.events.publish(&shimapi.TaskDelete{
		ContainerId: s.cfg.ID, ExecId: req.ExecId, Pid: uint32(pid),
		ExitStatus: uint32(exit.status), ExitedAt: timestamppb.New(exit.at),
	})
	return &shimapi.DeleteResponse{Pid: uint32(pid), ExitStatus: uint32(exit.status), ExitedAt: timestamppb.New(exit.at)}, nil
}

// Exec implements shimapi.TaskService.
func (s *Service) Exec(ctx context.Context, req *shimapi.ExecRequest) (*shimapi.Empty, error) {
	if err := identifiers.Validate(req.ExecId); err != nil {
		return nil, fmt.Errorf("exec id: %w", err)
	}
	var spec specs.Process
	if err := json.Unmarshal(req.Spec, &spec); err != nil {
		return nil, fmt.Errorf("exec %q: process spec: %v: %w", req.ExecId, err, errdefs.ErrInvalidArgument)
	}
	if len(spec.Args) == 0 {
		return nil, fmt.Errorf("exec %q: process spec has no args: %w", req.ExecId, errdefs.ErrInvalidArgument)
	}
	cfg := stdioConfig(req.Stdio)
	if spec.Terminal != cfg.Terminal {
		return nil, fmt.Errorf("exec %q: stdio terminal=%v but process.terminal=%v: %w", req.ExecId, cfg.Terminal, spec.Terminal, errdefs.ErrInvalidArgument)
	}
	if _, err := s.lookup(req.Id, ""); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if _, ok := s.execs[req.ExecId]; ok {
		s.mu.Unlock()
		return nil, fmt.Errorf("exec %q in container %q: %w", req.ExecId, req.Id, errdefs.ErrAlreadyExists)
	}
	p := newProcess(req.ExecId, &execActions{s: s, spec: spec}, nil)
	s.execs[req.ExecId] = p // reserved; stdio below may still fail
	s.mu.Unlock()

	pio, err := stdio.New(cfg, int(spec.User.UID), int(spec.User.GID))
	if err != nil {
		s.mu.Lock()
		delete(s.execs, req.ExecId)
		s.mu.Unlock()
		return nil, fmt.Errorf("exec %q: stdio: %w: %w", req.ExecId, err, errdefs.ErrInvalidArgument)
	}
	p.io = pio
	s.events.publish(&shimapi.TaskExecAdded{ContainerId: s.cfg.ID, ExecId: req.ExecId})
	return &shimapi.Empty{}, nil
}

// ResizePty implements shimapi.TaskService.
func (s *Service) ResizePty(ctx context.Context, req *shimapi.ResizePtyRequest) (*shimapi.Empty, error) {
	p, err := s.lookup(req.Id, req.ExecId)
	if err != nil {
		return nil, err
	}
	if err := p.io.Resize(req.Width, req.Height); err != nil {
		return nil, fmt.Errorf("resize %s: %w: %w", p.name, err, errdefs.ErrFailedPrecondition)
	}
	return &shimapi.Empty{}, nil
}

// CloseIO implements shimapi.TaskService.
func (s *Service) CloseIO(ctx context.Context, req *shimapi.CloseIORequest) (*shimapi.Empty, error) {
	p, err := s.lookup(req.Id, req.ExecId)
	if err != nil {
		return nil, err
	}
	if req.Stdin && p.io != nil {
		if err := p.io.CloseStdin(); err != nil {
			return nil, fmt.Errorf("close stdin of %s: %w", p.name, err)
		}
	}
	return &shimapi.Empty{}, nil
}

// ReopenLog implements shimapi.TaskService.
func (s *Service) ReopenLog(ctx context.Context, req *shimapi.ReopenLogRequest) (*shimapi.Empty, error) {
	p, err := s.lookup(req.Id, req.ExecId)
	if err != nil {
		return nil, err
	}
	if p.io == nil {
		return nil, fmt.Errorf("reopen log of %s: no output: %w", p.name, errdefs.ErrFailedPrecondition)
	}
	if err := p.io.ReopenLog(); err != nil {
		return nil, fmt.Errorf("reopen log of %s: %w", p.name, err)
	}
	return &shimapi.Empty{}, nil
}

// Pids implements shimapi.TaskService.
func (s *Service) Pids(ctx context.Context, req *shimapi.PidsRequest) (*shimapi.PidsResponse, error) {
	if _, err := s.lookup(req.Id, ""); err != nil {
		return nil, err
	}
	if s.rel.started() {
		// Released (or being released) after the init's exit: the
		// runtime no longer knows the container, which has no processes.
		return &shimapi.PidsResponse{}, nil
	}
	pids, err := s.runtime.Ps(ctx, s.cfg.ID)
	if err != nil {
		return nil, s.runtimeError(err, "ps")
	}
	byPid := map[int]string{}
	s.mu.Lock()
	for id, p := range s.execs {
		if pid, st, _ := p.snapshot(); st == Running {
			byPid[pid] = id
		}
	}
	s.mu.Unlock()
	resp := &shimapi.PidsResponse{}
	for _, pid := range pids {
		resp.Processes = append(resp.Processes, &shimapi.ProcessInfo{Pid: uint32(pid), ExecId: byPid[pid]})
	}
	return resp, nil
}

// Pause implements shimapi.TaskService.
func (s *Service) Pause(ctx context.Context, req *shimapi.PauseRequest) (*shimapi.Empty, error) {
	p, err := s.lookup(req.Id, "")
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.detach(ctx)
	defer cancel()
	if err := p.pause(ctx); err != nil {
		return nil, err
	}
	s.events.publish(&shimapi.TaskPaused{ContainerId: s.cfg.ID})
	return &shimapi.Empty{}, nil
}

// Resume implements shimapi.TaskService.
func (s *Service) Resume(ctx context.Context, req *shimapi.ResumeRequest) (*shimapi.Empty, error) {
	p, err := s.lookup(req.Id, "")
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.detach(ctx)
	defer cancel()
	if err := p.resume(ctx); err != nil {
		return nil, err
	}
	s.events.publish(&shimapi.TaskResumed{ContainerId: s.cfg.ID})
	return &shimapi.Empty{}, nil
}

// Update implements shimapi.TaskService.
func (s *Service) Update(ctx context.Context, req *shimapi.UpdateRequest) (*shimapi.Empty, error) {
	p, err := s.lookup(req.Id, "")
	if err != nil {
		return nil, err
	}
	var res specs.LinuxResources
	if err := json.Unmarshal(req.Resources, &res); err != nil {
		return nil, fmt.Errorf("update: resources: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	if st := p.Status(); st != Running && st != Paused && st != Created {
		return nil, fmt.Errorf("update: container is %s: %w", st, errdefs.ErrFailedPrecondition)
	}
	ctx, cancel := s.detach(ctx)
	defer cancel()
	if err := s.runtime.Update(ctx, s.cfg.ID, &res); err != nil {
		return nil, s.runtimeError(err, "update")
	}
	return &shimapi.Empty{}, nil
}

// Stats implements shimapi.TaskService.
func (s *Service) Stats(ctx context.Context, req *shimapi.StatsRequest) (*shimapi.StatsResponse, error) {
	if _, err := s.lookup(req.Id, ""); err != nil {
		return nil, err
	}
	s.mu.Lock()
	cg := s.cg
	s.mu.Unlock()
	if cg == nil {
		return nil, fmt.Errorf("stats: container %q has no readable cgroup: %w", req.Id, errdefs.ErrNotFound)
	}
	m, err := cg.Metrics()
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	return &shimapi.StatsResponse{Metrics: m}, nil
}

// Connect implements shimapi.TaskService.
func (s *Service) Connect(ctx context.Context, req *shimapi.ConnectRequest) (*shimapi.ConnectResponse, error) {
	resp := &shimapi.ConnectResponse{ShimPid: uint32(os.Getpid()), Version: shimapi.Version}
	s.mu.Lock()
	init := s.init
	s.mu.Unlock()
	if init != nil {
		// Under the process's lock: a Delete under way ends first, so a
		// daemon that connects while one runs learns its outcome.
		pid, st, _ := init.snapshot()
		resp.TaskPid = uint32(pid)
		resp.TaskDeleted = st == Deleted
	}
	return resp, nil
}

// Shutdown implements shimapi.TaskService.
func (s *Service) Shutdown(ctx context.Context, req *shimapi.ShutdownRequest) (*shimapi.Empty, error) {
	if !req.Now {
		s.mu.Lock()
		busy := (s.init != nil) || len(s.execs) > 0
		s.mu.Unlock()
		if busy {
			return nil, fmt.Errorf("shutdown: the container still exists; delete it first or pass now: %w", errdefs.ErrFailedPrecondition)
		}
	}
	s.shutdown.Do(func() {
		s.endLife()
		if s.cfg.Shutdown != nil {
			go s.cfg.Shutdown()
		}
	})
	return &shimapi.Empty{}, nil
}

// detach returns a context with ctx's values for a runtime call: it
// outlives ctx (see life) and ends when the shim shuts down.
func (s *Service) detach(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(s.life, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// Events implements shimapi.TaskService.
func (s *Service) Events(ctx context.Context, req *shimapi.EventsRequest, srv shimapi.Task_EventsServer) (err error) {
	defer errdefs.StreamCall(ctx, "/berth.shim.v1.Task/Events").Done(&err)
	return errdefs.ToTTRPC(s.events.stream(ctx, srv.Send))
}

// AckEvents implements shimapi.TaskService.
func (s *Service) AckEvents(ctx context.Context, req *shimapi.AckEventsRequest) (*shimapi.Empty, error) {
	s.events.ack(req.Seq)
	return &shimapi.Empty{}, nil
}

// Close stops OOM watching; the shim calls it on the way out.
func (s *Service) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cg != nil {
		s.cg.Close()
	}
}

var _ shimapi.TaskService = (*Service)(nil)
