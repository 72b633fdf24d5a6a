package task

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/identifiers"
	"github.com/berthrt/berth/internal/spantrace"
	"github.com/berthrt/berth/io/stdio"
	"github.com/berthrt/berth/mount"
	"github.com/berthrt/berth/shimapi"
	runc "github.com/containerd/go-runc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Config is what a shim is started with.
type Config struct {
	Namespace string
	ID        string
	Bundle    string // absolute path of the bundle folder
	Runtime   string // runtime binary: a name looked up in PATH, or a path
	// RuntimeRoot is the runtime's state folder (runc --root).
	RuntimeRoot string
	Logger      *slog.Logger
	// Shutdown is called once the service wants the shim to exit.
	Shutdown func()
}

// Service implements shimapi.TaskService for one container.
type Service struct {
	cfg     Config
	runtime *runc.Runc
	reaper  *Reaper
	events  *eventQueue
	log     *slog.Logger

	mu       sync.Mutex              // guards the fields below
	init     *process                // nil until Create
	execs    map[string]*process     // by exec id
	running  map[int]*process        // processes whose exit is still to come, by pid
	watches  map[*exitWatch]struct{} // runtime calls that may start a process
	cg       cgroup                  // nil until Create, or when unreadable
	shutdown sync.Once

	// life ends when the shim is told to shut down: runtime calls outlive
	// their caller (a half-made container is worse than a late answer)
	// but not the shim, so that a runtime that hangs is killed when the
	// daemon abandons the task instead of outliving its container.
	life    context.Context
	endLife context.CancelFunc
}

// exitWatch collects the exits that happen while a runtime call that starts
// a process is under way, so that an exit reaped before its pid is known is
// matched afterwards.
type exitWatch struct {
	exits []runc.Exit // guarded by Service.mu
}

// NewService returns the task service; it starts handling exits from r.
func NewService(cfg Config, r *Reaper) (*Service, error) {
	if err := identifiers.Validate(cfg.ID); err != nil {
		return nil, fmt.Errorf("container id: %w", err)
	}
	if err := identifiers.Validate(cfg.Namespace); err != nil {
		return nil, fmt.Errorf("namespace: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Service{
		cfg: cfg,
		runtime: &runc.Runc{
			Command:   cfg.Runtime,
			Root:      cfg.RuntimeRoot,
			Log:       filepath.Join(cfg.Bundle, "runtime.log"),
			LogFormat: runc.JSON,
			// No parent-death signal: the container must outlive the shim.
		},
		reaper:  r,
		events:  newEventQueue(DefaultEventQueueMax),
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

// handleExits is the one goroutine that turns reaped exits into process
// exits. It never blocks on a process's lock while holding s.mu.
func (s *Service) handleExits(sub *Subscription) {
	for range sub.Ready() {
		for _, e := range sub.Take() {
			s.mu.Lock()
			for w := range s.watches {
				w.exits = append(w.exits, e)
			}
			p := s.running[e.Pid]
			delete(s.running, e.Pid)
			s.mu.Unlock()
			if p != nil {
				s.processExited(p, exitInfo{status: e.Status, at: e.Timestamp})
			}
		}
	}
}

// watchExits starts collecting exits before a runtime call that starts a
// process.
func (s *Service) watchExits() *exitWatch {
	w := &exitWatch{}
	s.mu.Lock()
	s.watches[w] = struct{}{}
	s.mu.Unlock()
	return w
}

// settle ends a watch: if pid exited during the call its exit is returned;
// otherwise p is registered so that its exit will be routed to it.
func (s *Service) settle(w *exitWatch, pid int, p *process) *exitInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.watches, w)
	if pid == 0 {
		return nil
	}
	for _, e := range w.exits {
		if e.Pid == pid {
			return &exitInfo{status: e.Status, at: e.Timestamp}
		}
	}
	s.running[pid] = p
	return nil
}

func (s *Service) cancelWatch(w *exitWatch) {
	s.mu.Lock()
	delete(s.watches, w)
	s.mu.Unlock()
}

// processExited records an exit and reports it.
func (s *Service) processExited(p *process, e exitInfo) {
	if !p.exited(e) {
		return
	}
	s.exitRecorded(p, e)
}

// exitRecorded does what follows an exit: persist init's exit, deliver the
// output, release waiters, publish the event.
func (s *Service) exitRecorded(p *process, e exitInfo) {
	pid := p.Pid()
	if p.id == "" {
		defer spantrace.Start("write exit file").End()
		st := shimapi.ExitStatus{Pid: uint32(pid), Status: uint32(e.status), ExitedAt: e.at}
		if err := shimapi.WriteExitFile(s.cfg.Bundle, st); err != nil {
			s.log.Error("persist exit status", "error", err)
		}
	}
	go func() {
		p.finish()
		s.events.publish(&shimapi.TaskExit{
			ContainerId: s.cfg.ID, ExecId: p.id, Pid: uint32(pid),
			ExitStatus: uint32(e.status), ExitedAt: timestamppb.New(e.at),
		})
	}()
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

// Create implements shimapi.TaskService.
func (s *Service) Create(ctx context.Context, req *shimapi.CreateRequest) (_ *shimapi.CreateResponse, retErr error) {
	if req.Id != s.cfg.ID {
		return nil, fmt.Errorf("create %q: this shim serves %q: %w", req.Id, s.cfg.ID, errdefs.ErrInvalidArgument)
	}
	ctx, cancel := s.detach(ctx)
	defer cancel()
	s.mu.Lock()
	if s.init != nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("container %q: already created: %w", req.Id, errdefs.ErrAlreadyExists)
	}
	// Reserve the slot so a concurrent Create fails; filled below.
	placeholder := newProcess("", nil, nil)
	placeholder.status = Deleted
	s.init = placeholder
	s.mu.Unlock()
	defer func() {
		if retErr != nil {
			s.mu.Lock()
			s.init = nil
			s.mu.Unlock()
		}
	}()

	spec, err := s.loadBundleSpec()
	if err != nil {
		return nil, err
	}
	cfg := stdioConfig(req.Stdio)
	if spec.Process == nil {
		return nil, fmt.Errorf("bundle %s: config.json has no process: %w", s.cfg.Bundle, errdefs.ErrInvalidArgument)
	}
	if spec.Process.Terminal != cfg.Terminal {
		return nil, fmt.Errorf("create: stdio terminal=%v but config.json process.terminal=%v: %w", cfg.Terminal, spec.Process.Terminal, errdefs.ErrInvalidArgument)
	}
	mounts := make([]mount.Mount, 0, len(req.Rootfs))
	for _, m := range req.Rootfs {
		mounts = append(mounts, mount.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	rootfs := filepath.Join(s.cfg.Bundle, "rootfs")
	if len(mounts) > 0 {
		if err := os.MkdirAll(rootfs, 0o711); err != nil {
			return nil, err
		}
		if err := mount.All(mounts, rootfs); err != nil {
			return nil, fmt.Errorf("mount rootfs: %w", err)
		}
	}
	defer func() {
		if retErr != nil && len(mounts) > 0 {
			if err := mount.UnmountAll(rootfs, 0); err != nil {
				s.log.Error("unmount rootfs after failed create", "error", err)
			}
		}
	}()

	pio, err := stdio.New(cfg, int(spec.Process.User.UID), int(spec.Process.User.GID))
	if err != nil {
		return nil, fmt.Errorf("stdio: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	init := newProcess("", &initActions{s: s}, pio)
	pidFile := filepath.Join(s.cfg.Bundle, "init.pid")
	w := s.watchExits()
	span := spantrace.Start("runc create")
	err = s.runtime.Create(ctx, s.cfg.ID, s.cfg.Bundle, &runc.CreateOpts{
		PidFile:       pidFile,
		IO:            pio.RuncIO(),
		ConsoleSocket: pio.ConsoleSocket(),
	})
	if err != nil {
		s.cancelWatch(w)
		pio.Close()
		s.runtime.Delete(ctx, s.cfg.ID, &runc.DeleteOpts{Force: true})
		return nil, s.runtimeError(err, "create")
	}
	span.End()
	pid, err := runc.ReadPidFile(pidFile)
	if err == nil {
		err = pio.Started()
	}
	if err != nil {
		s.cancelWatch(w)
		pio.Close()
		s.runtime.Delete(ctx, s.cfg.ID, &runc.DeleteOpts{Force: true})
		return nil, fmt.Errorf("create: %w", err)
	}
	init.pid = pid
	early := s.settle(w, pid, init)

	s.mu.Lock()
	s.init = init
	s.mu.Unlock()
	if early != nil {
		s.processExited(init, *early)
	}
	span = spantrace.Start("watch cgroup")
	s.watchCgroup(pid)
	span.End()
	s.events.publish(&shimapi.TaskCreate{ContainerId: s.cfg.ID, Bundle: s.cfg.Bundle, Pid: uint32(pid), Stdio: req.Stdio})
	s.log.Info("created", "pid", pid)
	return &shimapi.CreateResponse{Pid: uint32(pid)}, nil
}

// watchCgroup loads the container's cgroup for Stats and OOM events. A
// cgroup that cannot be read costs Stats, not the container.
func (s *Service) watchCgroup(pid int) {
	cg, err := loadCgroup(pid)
	if err != nil {
		s.log.Warn("container cgroup unreadable: no stats, no OOM events", "error", err)
		return
	}
	if err := cg.watchOOM(func() {
		s.events.publish(&shimapi.TaskOOM{ContainerId: s.cfg.ID})
	}); err != nil {
		s.log.Warn("no OOM events", "error", err)
	}
	s.mu.Lock()
	s.cg = cg
	s.mu.Unlock()
}

// bundleSpec is what Create needs of the bundle's config.json. Decoding
// just these fields rather than a whole specs.Spec keeps encoding/json from
// building and caching decoders for the spec's many types, which an idle
// shim would hold for good (about 200 KB of heap).
type bundleSpec struct {
	Process *struct {
		Terminal bool       `json:"terminal"`
		User     specs.User `json:"user"`
	} `json:"process"`
}

func (s *Service) loadBundleSpec() (*bundleSpec, error) {
	data, err := os.ReadFile(filepath.Join(s.cfg.Bundle, "config.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("bundle %s has no config.json: %w", s.cfg.Bundle, errdefs.ErrFailedPrecondition)
	}
	if err != nil {
		return nil, err
	}
	var spec bundleSpec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("bundle %s: config.json: %v: %w", s.cfg.Bundle, err, errdefs.ErrInvalidArgument)
	}
	return &spec, nil
}

// runtimeError turns a failed runtime call into an error that carries the
// runtime's own message from its log.
func (s *Service) runtimeError(err error, op string) error {
	if msg := lastRuntimeError(s.runtime.Log); msg != "" {
		return fmt.Errorf("runtime %s: %s: %w", op, msg, errdefs.ErrFailedPrecondition)
	}
	return fmt.Errorf("runtime %s: %w", op, err)
}

// lastRuntimeError returns the message of the last error-level line of a
// runc JSON log.
func lastRuntimeError(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var msg string
	for _, line := range bytes.Split(data, []byte("\n")) {
		var l struct{ Level, Msg string }
		if json.Unmarshal(line, &l) == nil && (l.Level == "error" || l.Level == "fatal") {
			msg = l.Msg
		}
	}
	return msg
}

func stdioConfig(st *shimapi.Stdio) stdio.Config {
	return stdio.Config{Stdin: st.GetStdin(), Stdout: st.GetStdout(), Stderr: st.GetStderr(), Terminal: st.GetTerminal()}
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
		s.mu.Lock()
		var live []string
		for id, e := range s.execs {
			if st := e.Status(); st != Stopped && st != Deleted && st != Created {
				live = append(live, id)
			}
		}
		s.mu.Unlock()
		if len(live) > 0 {
			return nil, fmt.Errorf("delete container %q: exec processes %v still running: %w", req.Id, live, errdefs.ErrFailedPrecondition)
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
	m, err := cg.metrics()
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
		resp.TaskPid = uint32(init.Pid())
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
	defer errdefs.RecoverStream("/berth.shim.v1.Task/Events", &err)
	return errdefs.ToTTRPC(s.events.stream(ctx, srv.Send))
}

// AckEvents implements shimapi.TaskService.
func (s *Service) AckEvents(ctx context.Context, req *shimapi.AckEventsRequest) (*shimapi.Empty, error) {
	s.events.ack(req.Seq)
	return &shimapi.Empty{}, nil
}

// initActions are the runtime calls behind the init process's transitions.
type initActions struct{ s *Service }

func (a *initActions) start(ctx context.Context, p *process) (int, *exitInfo, error) {
	defer spantrace.Start("runc start").End()
	if err := a.s.runtime.Start(ctx, a.s.cfg.ID); err != nil {
		return 0, nil, a.s.runtimeError(err, "start")
	}
	return 0, nil, nil
}

func (a *initActions) pause(ctx context.Context) error {
	if err := a.s.runtime.Pause(ctx, a.s.cfg.ID); err != nil {
		return a.s.runtimeError(err, "pause")
	}
	return nil
}

func (a *initActions) resume(ctx context.Context) error {
	if err := a.s.runtime.Resume(ctx, a.s.cfg.ID); err != nil {
		return a.s.runtimeError(err, "resume")
	}
	return nil
}

func (a *initActions) kill(ctx context.Context, p *process, sig int, all bool) error {
	if err := a.s.runtime.Kill(ctx, a.s.cfg.ID, sig, &runc.KillOpts{All: all}); err != nil {
		return a.s.runtimeError(err, "kill")
	}
	return nil
}

// delete removes the container from the runtime, unmounts the rootfs and
// removes the exit file: the exit has now been handed over.
func (a *initActions) delete(ctx context.Context, p *process) error {
	s := a.s
	span := spantrace.Start("runc delete")
	err := s.runtime.Delete(ctx, s.cfg.ID, &runc.DeleteOpts{Force: true})
	span.End()
	if err != nil {
		if _, serr := s.runtime.State(ctx, s.cfg.ID); serr != nil {
			err = nil // already gone from the runtime
		} else {
			return s.runtimeError(err, "delete")
		}
	}
	s.mu.Lock()
	if s.cg != nil {
		s.cg.close()
		s.cg = nil
	}
	s.mu.Unlock()
	if err := mount.UnmountAll(filepath.Join(s.cfg.Bundle, "rootfs"), 0); err != nil {
		return fmt.Errorf("unmount rootfs: %w", err)
	}
	if err := os.Remove(filepath.Join(s.cfg.Bundle, shimapi.ExitFileName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	os.Remove(filepath.Join(s.cfg.Bundle, "init.pid"))
	return nil
}

// execActions are the runtime calls behind an exec process's transitions.
type execActions struct {
	s    *Service
	spec specs.Process
}

func (a *execActions) start(ctx context.Context, p *process) (int, *exitInfo, error) {
	s := a.s
	pidFile := filepath.Join(s.cfg.Bundle, "exec-"+p.id+".pid")
	defer os.Remove(pidFile)
	w := s.watchExits()
	err := s.runtime.Exec(ctx, s.cfg.ID, a.spec, &runc.ExecOpts{
		PidFile:       pidFile,
		IO:            p.io.RuncIO(),
		ConsoleSocket: p.io.ConsoleSocket(),
		Detach:        true,
	})
	if err != nil {
		s.cancelWatch(w)
		return 0, nil, s.runtimeError(err, "exec")
	}
	pid, err := runc.ReadPidFile(pidFile)
	if err == nil {
		err = p.io.Started()
	}
	if err != nil {
		s.cancelWatch(w)
		return 0, nil, fmt.Errorf("exec %s: %w", p.id, err)
	}
	return pid, s.settle(w, pid, p), nil
}

func (a *execActions) pause(context.Context) error {
	return fmt.Errorf("an exec process is paused with its container: %w", errdefs.ErrNotImplemented)
}

func (a *execActions) resume(context.Context) error {
	return fmt.Errorf("an exec process is resumed with its container: %w", errdefs.ErrNotImplemented)
}

func (a *execActions) kill(ctx context.Context, p *process, sig int, all bool) error {
	pid := p.pid // mu is held by the transition
	if pid == 0 {
		return fmt.Errorf("exec %s: not started: %w", p.id, errdefs.ErrFailedPrecondition)
	}
	if err := unix.Kill(pid, unix.Signal(sig)); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("exec %s: process already finished: %w", p.id, errdefs.ErrNotFound)
		}
		return fmt.Errorf("exec %s: kill: %w", p.id, err)
	}
	return nil
}

func (a *execActions) delete(context.Context, *process) error { return nil }

// Close stops OOM watching; the shim calls it on the way out.
func (s *Service) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cg != nil {
		s.cg.close()
	}
}

var _ shimapi.TaskService = (*Service)(nil)
