// Package tasks serves berth.services.tasks.v1: the running instances of
// containers, each supervised by one shim. The service is a thin layer over
// the supervisor: it finds the container, asks the supervisor for the
// task's shim and relays the call; the shim is the authority on a task's
// state, so nothing here is cached.
package tasks

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthrt/berth/containers"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/filters"
	"github.com/berthrt/berth/identifiers"
	nsctx "github.com/berthrt/berth/namespaces"
	api "github.com/berthrt/berth/proto/tasks/v1"
	"github.com/berthrt/berth/services"
	"github.com/berthrt/berth/shimapi"
	"github.com/berthrt/berth/supervisor"
)

// deathGrace bounds how long a call that lost its shim waits for the
// supervisor to record the death (it notices within a second) before it
// reports the task as unavailable.
const deathGrace = 2 * time.Second

// listTimeout bounds the time a List or Metrics call gives one task, and
// listConcurrency how many tasks it asks at once.
const (
	listTimeout     = 2 * time.Second
	listConcurrency = 16
)

// readyTimeout bounds how long a call waits for its task's shim to be
// reconnected after a daemon start.
const readyTimeout = 10 * time.Second

// Config is what the service uses.
type Config struct {
	Containers containers.Store
	Supervisor *supervisor.Supervisor
	// Locks is shared with the containers service: Create holds the
	// container's lock from its lookup until the task exists, so the
	// container cannot be deleted in between.
	Locks *services.IDLocks
}

type service struct{ Config }

// Register serves the tasks API on srv.
func Register(srv *ttrpc.Server, cfg Config) {
	api.RegisterTasksService(srv, &service{cfg})
}

// shim returns the shim of the task of container id in the namespace of
// ctx, waiting for it when the daemon is still restoring shims.
func (s *service) shim(ctx context.Context, id string) (string, *supervisor.Shim, error) {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return "", nil, err
	}
	if err := identifiers.Validate(id); err != nil {
		return "", nil, fmt.Errorf("container id: %w", err)
	}
	sh, err := s.Supervisor.Get(ns, id)
	if err != nil {
		return "", nil, fmt.Errorf("task %q: %w", id, err)
	}
	rctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if err := sh.Ready(rctx); err != nil {
		return "", nil, err
	}
	return ns, sh, nil
}

func (s *service) Create(ctx context.Context, req *api.CreateTaskRequest) (*api.CreateTaskResponse, error) {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	if err := identifiers.Validate(req.GetContainerId()); err != nil {
		return nil, fmt.Errorf("container id: %w", err)
	}
	unlock, err := s.Locks.Lock(ctx, ns, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	defer unlock()
	c, err := s.Containers.Get(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	sh, err := s.Supervisor.Create(ctx, ns, c.ID, supervisor.CreateOpts{
		Runtime: c.Runtime.Name,
		Spec:    c.Spec,
		Rootfs:  req.GetRootfs(),
		Stdio:   req.GetStdio(),
		Start:   req.GetStart(),

		CleanupOnExit: req.GetCleanupOnExit(),
	})
	if err != nil {
		return nil, err
	}
	// The pid the shim's Create returned: a failing call here would report
	// a task that exists as not created.
	return &api.CreateTaskResponse{ContainerId: c.ID, Pid: sh.TaskPid()}, nil
}

func (s *service) Start(ctx context.Context, req *api.StartRequest) (*api.StartResponse, error) {
	_, sh, err := s.shim(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	resp, err := sh.Task().Start(ctx, &shimapi.StartRequest{Id: req.GetContainerId(), ExecId: req.GetExecId()})
	if err != nil {
		return nil, s.stopped(ctx, sh, err)
	}
	return &api.StartResponse{Pid: resp.Pid}, nil
}

func (s *service) Delete(ctx context.Context, req *api.DeleteTaskRequest) (*api.DeleteResponse, error) {
	ns, _, err := s.shim(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	resp, err := s.Supervisor.Delete(ctx, ns, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	return &api.DeleteResponse{Id: req.GetContainerId(), Pid: resp.Pid, ExitStatus: resp.ExitStatus, ExitedAt: resp.ExitedAt}, nil
}

func (s *service) DeleteProcess(ctx context.Context, req *api.DeleteProcessRequest) (*api.DeleteResponse, error) {
	if req.GetExecId() == "" {
		return nil, fmt.Errorf("exec id is required (delete the init process with Delete): %w", errdefs.ErrInvalidArgument)
	}
	_, sh, err := s.shim(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	resp, err := sh.DeleteProcess(ctx, &shimapi.DeleteRequest{Id: req.GetContainerId(), ExecId: req.GetExecId()})
	if err != nil {
		return nil, s.stopped(ctx, sh, err)
	}
	return &api.DeleteResponse{Id: req.GetExecId(), Pid: resp.Pid, ExitStatus: resp.ExitStatus, ExitedAt: resp.ExitedAt}, nil
}

func (s *service) Get(ctx context.Context, req *api.GetRequest) (*api.GetResponse, error) {
	_, sh, err := s.shim(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	p, err := s.process(ctx, sh, req.GetExecId())
	if err != nil {
		return nil, err
	}
	return &api.GetResponse{Process: p}, nil
}

// process reports one process of sh; a task whose shim is gone is stopped
// with the exit the supervisor recorded.
func (s *service) process(ctx context.Context, sh *supervisor.Shim, execID string) (*api.Process, error) {
	if exit, ok := sh.Exited(); ok {
		if execID != "" {
			return nil, fmt.Errorf("process %q of task %q: the shim is gone: %w", execID, sh.ID, errdefs.ErrNotFound)
		}
		return stoppedProcess(sh, exit), nil
	}
	st, err := sh.Task().State(ctx, &shimapi.StateRequest{Id: sh.ID, ExecId: execID})
	if err != nil {
		if exit, ok := s.waitExited(ctx, sh, err); ok && execID == "" {
			return stoppedProcess(sh, exit), nil
		}
		return nil, err
	}
	p := &api.Process{
		ContainerId: sh.ID,
		ExecId:      execID,
		Pid:         st.Pid,
		Status:      st.Status,
		Stdio:       st.Stdio,
		ExitStatus:  st.ExitStatus,
		ExitedAt:    st.ExitedAt,
	}
	if execID == "" {
		p.ShimPid = uint32(sh.ShimPid())
	}
	return p, nil
}

func (s *service) List(ctx context.Context, req *api.ListTasksRequest) (*api.ListTasksResponse, error) {
	procs, err := s.matching(ctx, req.GetFilters())
	if err != nil {
		return nil, err
	}
	return &api.ListTasksResponse{Tasks: procs}, nil
}

// matching returns the init process of every task of the namespace of ctx
// that matches any of the filters. Tasks that vanish meanwhile are left
// out.
func (s *service) matching(ctx context.Context, filterStrings []string) ([]*api.Process, error) {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	filter, err := filters.ParseAll(filterStrings...)
	if err != nil {
		return nil, err
	}
	shims := s.Supervisor.List(ns)
	procs := make([]*api.Process, len(shims))
	var wg sync.WaitGroup
	sem := make(chan struct{}, listConcurrency)
	for i, sh := range shims {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			procs[i] = s.listed(ctx, sh)
		}()
	}
	wg.Wait()
	var out []*api.Process
	for _, p := range procs {
		if p != nil && filter.Match(adaptor(p)) {
			out = append(out, p)
		}
	}
	return out, nil
}

// listed reports the init process of sh for a list: quickly, so that one
// slow or restoring shim neither stalls nor fails the whole list. A task
// whose state cannot be had in time is listed with status UNKNOWN; one
// that vanished meanwhile is left out (nil).
func (s *service) listed(ctx context.Context, sh *supervisor.Shim) *api.Process {
	unknown := &api.Process{ContainerId: sh.ID, Pid: sh.TaskPid(), Status: shimapi.Status_STATUS_UNKNOWN}
	ctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	if err := sh.Ready(ctx); err != nil {
		return unknown
	}
	if exit, ok := sh.Exited(); ok {
		return stoppedProcess(sh, exit)
	}
	st, err := sh.Task().State(ctx, &shimapi.StateRequest{Id: sh.ID})
	switch {
	case errdefs.IsNotFound(err):
		return nil
	case err != nil:
		return unknown
	}
	return &api.Process{ContainerId: sh.ID, Pid: st.Pid, Status: st.Status, Stdio: st.Stdio,
		ExitStatus: st.ExitStatus, ExitedAt: st.ExitedAt, ShimPid: uint32(sh.ShimPid())}
}

// stoppedProcess is the init process of a task whose shim is gone. Its
// stdio comes from the supervisor's record, so that a client loading the
// task can still remove its FIFOs.
func stoppedProcess(sh *supervisor.Shim, exit shimapi.ExitStatus) *api.Process {
	return &api.Process{
		ContainerId: sh.ID,
		Pid:         uint32(exit.Pid),
		Status:      shimapi.Status_STATUS_STOPPED,
		Stdio:       sh.Stdio(),
		ExitStatus:  exit.Status,
		ExitedAt:    timestamppb.New(exit.ExitedAt),
	}
}

func (s *service) Kill(ctx context.Context, req *api.KillRequest) (*emptypb.Empty, error) {
	_, sh, err := s.shim(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if _, err := sh.Task().Kill(ctx, &shimapi.KillRequest{Id: req.GetContainerId(), ExecId: req.GetExecId(), Signal: req.GetSignal(), All: req.GetAll()}); err != nil {
		return nil, s.stopped(ctx, sh, err)
	}
	return &emptypb.Empty{}, nil
}

func (s *service) Exec(ctx context.Context, req *api.ExecProcessRequest) (*emptypb.Empty, error) {
	if err := identifiers.Validate(req.GetExecId()); err != nil {
		return nil, fmt.Errorf("exec id: %w", err)
	}
	if len(req.GetSpec()) == 0 {
		return nil, fmt.Errorf("exec %q: a process spec is required: %w", req.GetExecId(), errdefs.ErrInvalidArgument)
	}
	_, sh, err := s.shim(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if err := sh.Exec(ctx, &shimapi.ExecRequest{Id: req.GetContainerId(), ExecId: req.GetExecId(), Stdio: req.GetStdio(), Spec: req.GetSpec()}); err != nil {
		return nil, s.stopped(ctx, sh, err)
	}
	return &emptypb.Empty{}, nil
}

func (s *service) ResizePty(ctx context.Context, req *api.ResizePtyRequest) (*emptypb.Empty, error) {
	_, sh, err := s.shim(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if _, err := sh.Task().ResizePty(ctx, &shimapi.ResizePtyRequest{Id: req.GetContainerId(), ExecId: req.GetExecId(), Width: req.GetWidth(), Height: req.GetHeight()}); err != nil {
		return nil, s.stopped(ctx, sh, err)
	}
	return &emptypb.Empty{}, nil
}

func (s *service) CloseIO(ctx context.Context, req *api.CloseIORequest) (*emptypb.Empty, error) {
	_, sh, err := s.shim(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if _, err := sh.Task().CloseIO(ctx, &shimapi.CloseIORequest{Id: req.GetContainerId(), ExecId: req.GetExecId(), Stdin: req.GetStdin()}); err != nil {
		return nil, s.stopped(ctx, sh, err)
	}
	return &emptypb.Empty{}, nil
}

func (s *service) ReopenLog(ctx context.Context, req *api.ReopenLogRequest) (*emptypb.Empty, error) {
	_, sh, err := s.shim(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if _, err := sh.Task().ReopenLog(ctx, &shimapi.ReopenLogRequest{Id: req.GetContainerId(), ExecId: req.GetExecId()}); err != nil {
		return nil, s.stopped(ctx, sh, err)
	}
	return &emptypb.Empty{}, nil
}

func (s *service) Pause(ctx context.Context, req *api.PauseTaskRequest) (*emptypb.Empty, error) {
	_, sh, err := s.shim(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if _, err := sh.Task().Pause(ctx, &shimapi.PauseRequest{Id: req.GetContainerId()}); err != nil {
		return nil, s.stopped(ctx, sh, err)
	}
	return &emptypb.Empty{}, nil
}

func (s *service) Resume(ctx context.Context, req *api.ResumeTaskRequest) (*emptypb.Empty, error) {
	_, sh, err := s.shim(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if _, err := sh.Task().Resume(ctx, &shimapi.ResumeRequest{Id: req.GetContainerId()}); err != nil {
		return nil, s.stopped(ctx, sh, err)
	}
	return &emptypb.Empty{}, nil
}

func (s *service) ListPids(ctx context.Context, req *api.ListPidsRequest) (*api.ListPidsResponse, error) {
	_, sh, err := s.shim(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	resp, err := sh.Task().Pids(ctx, &shimapi.PidsRequest{Id: req.GetContainerId()})
	if err != nil {
		return nil, s.stopped(ctx, sh, err)
	}
	return &api.ListPidsResponse{Processes: resp.Processes}, nil
}

func (s *service) Update(ctx context.Context, req *api.UpdateTaskRequest) (*emptypb.Empty, error) {
	_, sh, err := s.shim(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if _, err := sh.Task().Update(ctx, &shimapi.UpdateRequest{Id: req.GetContainerId(), Resources: req.GetResources()}); err != nil {
		return nil, s.stopped(ctx, sh, err)
	}
	return &emptypb.Empty{}, nil
}

func (s *service) Metrics(ctx context.Context, req *api.MetricsRequest) (*api.MetricsResponse, error) {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	procs, err := s.matching(ctx, req.GetFilters())
	if err != nil {
		return nil, err
	}
	resp := &api.MetricsResponse{}
	for _, p := range procs {
		if p.Status == shimapi.Status_STATUS_STOPPED || p.Status == shimapi.Status_STATUS_UNKNOWN {
			continue // its cgroup is gone, or its shim does not answer
		}
		sh, err := s.Supervisor.Get(ns, p.ContainerId)
		if err != nil {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, listTimeout)
		st, err := sh.Task().Stats(sctx, &shimapi.StatsRequest{Id: p.ContainerId})
		cancel()
		if errdefs.IsNotFound(err) || errdefs.IsFailedPrecondition(err) {
			continue // exited meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("task %q: %w", p.ContainerId, err)
		}
		resp.Metrics = append(resp.Metrics, &api.TaskMetrics{ContainerId: p.ContainerId, Timestamp: timestamppb.Now(), Metrics: st.Metrics})
	}
	return resp, nil
}

func (s *service) Wait(ctx context.Context, req *api.WaitRequest) (*api.WaitResponse, error) {
	_, sh, err := s.shim(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if exit, ok := sh.Exited(); ok && req.GetExecId() == "" {
		return &api.WaitResponse{ExitStatus: exit.Status, ExitedAt: timestamppb.New(exit.ExitedAt)}, nil
	}
	resp, err := sh.Task().Wait(ctx, &shimapi.WaitRequest{Id: req.GetContainerId(), ExecId: req.GetExecId()})
	if err != nil {
		if ctx.Err() == nil && req.GetExecId() == "" {
			if exit, ok := s.waitExited(ctx, sh, err); ok {
				return &api.WaitResponse{ExitStatus: exit.Status, ExitedAt: timestamppb.New(exit.ExitedAt)}, nil
			}
		}
		return nil, err
	}
	return &api.WaitResponse{ExitStatus: resp.ExitStatus, ExitedAt: resp.ExitedAt}, nil
}

// waitExited decides whether a failed call means the shim died: if the
// error is one of a lost connection, it gives the supervisor deathGrace to
// notice the death, then waits (as long as ctx allows) for the cleanup to
// finish, and returns the exit it recorded.
func (s *service) waitExited(ctx context.Context, sh *supervisor.Shim, err error) (shimapi.ExitStatus, bool) {
	if !connectionLost(err) {
		return shimapi.ExitStatus{}, false
	}
	deadline := time.Now().Add(deathGrace)
	for {
		if exit, ok := sh.Exited(); ok {
			return exit, true
		}
		if sh.Dying() {
			select {
			case <-sh.Reaped():
				return sh.Exited()
			case <-ctx.Done():
				return shimapi.ExitStatus{}, false
			}
		}
		if time.Now().After(deadline) {
			return shimapi.ExitStatus{}, false
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return shimapi.ExitStatus{}, false
		}
	}
}

// stopped turns the error of a call to a shim that has died into a
// FailedPrecondition that says so.
func (s *service) stopped(ctx context.Context, sh *supervisor.Shim, err error) error {
	if exit, ok := s.waitExited(ctx, sh, err); ok {
		return fmt.Errorf("task %q has stopped (exit status %d; its shim is gone): %w", sh.ID, exit.Status, errdefs.ErrFailedPrecondition)
	}
	return err
}

func connectionLost(err error) bool {
	return errors.Is(err, ttrpc.ErrClosed) || errdefs.IsUnavailable(err) ||
		strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe") ||
		strings.Contains(err.Error(), "use of closed network connection")
}

func adaptor(p *api.Process) filters.Adaptor {
	return filters.AdapterFunc(func(path []string) (string, bool) {
		if len(path) != 1 {
			return "", false
		}
		switch path[0] {
		case "id", "container_id":
			return p.ContainerId, true
		case "pid":
			return strconv.FormatUint(uint64(p.Pid), 10), true
		case "status":
			return StatusName(p.Status), true
		}
		return "", false
	})
}

// StatusName is the lower-case name of a status: created, running, paused,
// stopped or unknown.
func StatusName(s shimapi.Status) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "STATUS_"))
}
