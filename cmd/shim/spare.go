package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/identifiers"
	"github.com/berthrt/berth/internal/jsonlog"
	"github.com/berthrt/berth/internal/shimlaunch"
	"github.com/berthrt/berth/shimapi"
	"github.com/berthrt/berth/task"
)

// A spare shim is started before its container is asked for (`serve
// --spare`, which berthd starts itself through package shimlaunch, or
// `start --spare`, which does the same for any other caller), in a folder of the daemon's that is not a bundle yet, and
// serves no container: berthd keeps one ready so that a task's Create
// does not wait for a shim to start. The first Create binds it: the daemon
// has renamed the spare's folder to the task's bundle (so socket, pid file
// and log are in place) and names the bundle, namespace and runtime in
// CreateRequest.bind. From then on it is the task's shim like any other.
//
// A spare holds no container state. Until it is bound it exits when the
// daemon that started it exits (a pidfd of the daemon, inherited from its
// starter), when watching that pidfd fails, or when asked to shut down; it
// refuses to serve at all without a pidfd it can watch. So a daemon that
// dies leaves nothing to restore but a folder.

// daemonFD is the pidfd of the daemon, inherited by a spare from its
// starter (berthd itself, or start --spare).
const daemonFD = shimlaunch.DaemonFD

// spareService serves the shim API for a spare: until bound, only Connect,
// Shutdown and a binding Create; then every call goes to the task service.
type spareService struct {
	// newService makes the task service for a binding; the folder is the
	// bundle by then.
	newService func(namespace, id string, b *shimapi.Binding) (*task.Service, error)
	shutdown   func() // once: the shim exits
	unwatch    func() // stops watchDaemon; nil when it does not run

	mu     sync.Mutex    // guards the fields below
	svc    *task.Service // nil until bound
	closed bool          // shutting down: no binding any more
}

// bound returns the task service, or an error while the spare is unbound.
func (s *spareService) bound() (*task.Service, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.svc == nil {
		return nil, fmt.Errorf("spare shim serves no container yet: %w", errdefs.ErrFailedPrecondition)
	}
	return s.svc, nil
}

// current returns the task service, or nil while unbound.
func (s *spareService) current() *task.Service {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.svc
}

// close ends the spare's life unless it is bound: it reports whether the
// shim should exit.
func (s *spareService) close() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.svc != nil {
		return false
	}
	s.closed = true
	return true
}

// bind makes the spare the shim of task (b.Namespace, id).
func (s *spareService) bind(id string, b *shimapi.Binding) (*task.Service, error) {
	if err := identifiers.Validate(b.GetNamespace()); err != nil {
		return nil, fmt.Errorf("bind: namespace: %w", err)
	}
	if err := identifiers.Validate(id); err != nil {
		return nil, fmt.Errorf("bind: container id: %w", err)
	}
	if !filepath.IsAbs(b.GetBundle()) || b.GetRuntime() == "" || !filepath.IsAbs(b.GetRuntimeRoot()) {
		return nil, fmt.Errorf("bind: want an absolute bundle and runtime root and a runtime, got %q, %q, %q: %w",
			b.GetBundle(), b.GetRuntimeRoot(), b.GetRuntime(), errdefs.ErrInvalidArgument)
	}
	// The daemon renamed our folder to the bundle: the working folder,
	// which was the spare's, must be it now.
	if wd, err := os.Getwd(); err != nil || wd != b.GetBundle() {
		return nil, fmt.Errorf("bind: bundle %s is not this spare's folder (%s, %v): %w", b.GetBundle(), wd, err, errdefs.ErrInvalidArgument)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return nil, fmt.Errorf("bind: spare shim is shutting down: %w", errdefs.ErrUnavailable)
	case s.svc != nil:
		return nil, fmt.Errorf("bind: shim is bound already: %w", errdefs.ErrAlreadyExists)
	}
	svc, err := s.newService(b.GetNamespace(), id, b)
	if err != nil {
		return nil, err
	}
	s.svc = svc
	if s.unwatch != nil {
		s.unwatch() // bound: the container must outlive any daemon
	}
	return svc, nil
}

func (s *spareService) Create(ctx context.Context, req *shimapi.CreateRequest) (*shimapi.CreateResponse, error) {
	if req.GetBind() == nil {
		if s.current() != nil {
			return nil, fmt.Errorf("create %q: shim is bound already: %w", req.GetId(), errdefs.ErrAlreadyExists)
		}
		return nil, fmt.Errorf("create %q: a spare shim needs a binding: %w", req.GetId(), errdefs.ErrInvalidArgument)
	}
	svc, err := s.bind(req.GetId(), req.GetBind())
	if err != nil {
		return nil, err
	}
	return svc.Create(ctx, req)
}

func (s *spareService) Connect(ctx context.Context, req *shimapi.ConnectRequest) (*shimapi.ConnectResponse, error) {
	if svc := s.current(); svc != nil {
		return svc.Connect(ctx, req)
	}
	return &shimapi.ConnectResponse{ShimPid: uint32(os.Getpid()), Version: shimapi.Version}, nil
}

func (s *spareService) Shutdown(ctx context.Context, req *shimapi.ShutdownRequest) (*shimapi.Empty, error) {
	if svc := s.current(); svc != nil {
		return svc.Shutdown(ctx, req)
	}
	if s.close() {
		s.shutdown()
	}
	return &shimapi.Empty{}, nil
}

func (s *spareService) Events(ctx context.Context, req *shimapi.EventsRequest, srv shimapi.Task_EventsServer) error {
	svc, err := s.bound()
	if err != nil {
		return errdefs.ToTTRPC(err)
	}
	return svc.Events(ctx, req, srv)
}

// forward calls method of the bound task service.
func forward[Req, Resp any](s *spareService, ctx context.Context, req Req, method func(*task.Service, context.Context, Req) (Resp, error)) (Resp, error) {
	svc, err := s.bound()
	if err != nil {
		var none Resp
		return none, err
	}
	return method(svc, ctx, req)
}

func (s *spareService) Start(ctx context.Context, r *shimapi.StartRequest) (*shimapi.StartResponse, error) {
	return forward(s, ctx, r, (*task.Service).Start)
}

func (s *spareService) State(ctx context.Context, r *shimapi.StateRequest) (*shimapi.StateResponse, error) {
	return forward(s, ctx, r, (*task.Service).State)
}

func (s *spareService) Kill(ctx context.Context, r *shimapi.KillRequest) (*shimapi.Empty, error) {
	return forward(s, ctx, r, (*task.Service).Kill)
}

func (s *spareService) Wait(ctx context.Context, r *shimapi.WaitRequest) (*shimapi.WaitResponse, error) {
	return forward(s, ctx, r, (*task.Service).Wait)
}

func (s *spareService) Delete(ctx context.Context, r *shimapi.DeleteRequest) (*shimapi.DeleteResponse, error) {
	return forward(s, ctx, r, (*task.Service).Delete)
}

func (s *spareService) Exec(ctx context.Context, r *shimapi.ExecRequest) (*shimapi.Empty, error) {
	return forward(s, ctx, r, (*task.Service).Exec)
}

func (s *spareService) ResizePty(ctx context.Context, r *shimapi.ResizePtyRequest) (*shimapi.Empty, error) {
	return forward(s, ctx, r, (*task.Service).ResizePty)
}

func (s *spareService) CloseIO(ctx context.Context, r *shimapi.CloseIORequest) (*shimapi.Empty, error) {
	return forward(s, ctx, r, (*task.Service).CloseIO)
}

func (s *spareService) Pids(ctx context.Context, r *shimapi.PidsRequest) (*shimapi.PidsResponse, error) {
	return forward(s, ctx, r, (*task.Service).Pids)
}

func (s *spareService) Pause(ctx context.Context, r *shimapi.PauseRequest) (*shimapi.Empty, error) {
	return forward(s, ctx, r, (*task.Service).Pause)
}

func (s *spareService) Resume(ctx context.Context, r *shimapi.ResumeRequest) (*shimapi.Empty, error) {
	return forward(s, ctx, r, (*task.Service).Resume)
}

func (s *spareService) Update(ctx context.Context, r *shimapi.UpdateRequest) (*shimapi.Empty, error) {
	return forward(s, ctx, r, (*task.Service).Update)
}

func (s *spareService) Stats(ctx context.Context, r *shimapi.StatsRequest) (*shimapi.StatsResponse, error) {
	return forward(s, ctx, r, (*task.Service).Stats)
}

func (s *spareService) ReopenLog(ctx context.Context, r *shimapi.ReopenLogRequest) (*shimapi.Empty, error) {
	return forward(s, ctx, r, (*task.Service).ReopenLog)
}

func (s *spareService) AckEvents(ctx context.Context, r *shimapi.AckEventsRequest) (*shimapi.Empty, error) {
	return forward(s, ctx, r, (*task.Service).AckEvents)
}

// watchDaemon shuts the spare down when the daemon whose pidfd it
// inherited (fd) exits before the spare is bound, and also when the watch
// itself fails while the spare is unbound: a spare that cannot tell when
// its daemon is gone would outlive it, and it holds no container, so
// nothing is lost by its exit. It fails when fd is no pidfd the runtime
// can poll; serve then fails before it is ready, and with it `berth-shim
// start --spare`, whose caller starts shims itself meanwhile.
func watchDaemon(s *spareService, fd int, log *jsonlog.Logger) error {
	if pid, err := pidfdPid(fd); err != nil {
		return fmt.Errorf("daemon pidfd (fd %d): %w", fd, err)
	} else if pid == 1 {
		return fmt.Errorf("daemon pidfd (fd %d) names init, which never exits", fd)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return fmt.Errorf("daemon pidfd (fd %d): %w", fd, err)
	}
	f := os.NewFile(uintptr(fd), "daemon-pidfd")
	// Only a descriptor in the runtime's poller can be waited for (and
	// closed from under the wait by a binding); SetReadDeadline tells.
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		f.Close()
		return fmt.Errorf("daemon pidfd cannot be polled: %w", err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return fmt.Errorf("daemon pidfd: %w", err)
	}
	s.unwatch = func() { f.Close() }
	go func() {
		// Each call looks whether the daemon has exited (its pidfd is
		// readable) and, while not, has the runtime's poller wait for the
		// pidfd's next wake-up. Never wait first: the poller is edge
		// triggered, and Read forgets a wake-up that came before it (a
		// daemon killed while this spare was starting), so the spare
		// would wait for one that never comes.
		err := rc.Read(func(fd uintptr) bool { return pidfdExited(int(fd)) })
		// close fails once a binding took the spare (and closed the
		// pidfd, which ends the wait): a bound shim outlives any daemon.
		if !s.close() {
			return
		}
		if err != nil {
			log.Warn("watching the daemon failed; the spare shuts down rather than outlive it", "error", err)
		} else {
			log.Info("the daemon that started this spare exited; shutting down")
		}
		s.shutdown()
	}()
	return nil
}

// pidfdExited reports whether the process of the pidfd fd has exited: the
// pidfd is readable then. An error counts as exited, so that the spare
// shuts down rather than wait on a descriptor it cannot poll.
func pidfdExited(fd int) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return err != nil || n > 0
	}
}

// pidfdPid returns the pid that the pidfd fd names, from its fdinfo: -1
// once that process has exited and been reaped. It fails when fd is no
// pidfd.
func pidfdPid(fd int) (int, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", fd))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "Pid:"); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("not a pidfd")
}
