package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/shimapi"
	"github.com/containerd/ttrpc"
)

// state is where a Shim is in its life, as the supervisor sees it.
//
//	creating ──► running ──► deleting ──► (removed)
//	    │           │  ▲
//	    │           ▼  │ (reconnected)
//	    │        reaping ──► stopped ──► (removed by Delete)
//	restoring ──┘ (dead)        ▲
//	    └─── (reaped bundle) ────┘
type state int

const (
	// creating: Create is under way; the task is not visible yet.
	stateCreating state = iota
	// restoring: found on disk by Restore, not yet classified.
	stateRestoring
	// running: connected to a live shim.
	stateRunning
	// reaping: the shim died; the cleanup is under way.
	stateReaping
	// stopped: the shim is gone; the exit status is known.
	stateStopped
	// deleting: Delete removes the task; the shim's exit is expected.
	stateDeleting
)

func (st state) String() string {
	return [...]string{"creating", "restoring", "running", "reaping", "stopped", "deleting"}[st]
}

// Shim is the supervisor's handle on one task and its shim. Its exported
// fields never change.
type Shim struct {
	Namespace string
	ID        string
	Bundle    string
	// Runtime is the OCI runtime the task runs with.
	Runtime string

	// stdio is the init process's stdio, as recorded in the bundle; set
	// before the Shim is added, never changed (see Stdio).
	stdio *shimapi.Stdio

	s *Supervisor
	// ctx ends run and the event loop: cancelled by Close (through the
	// supervisor's context) or by Delete.
	ctx    context.Context
	cancel context.CancelFunc
	// done is closed when run has returned; nil until run starts.
	done chan struct{}
	// classified is closed when the shim leaves creating or restoring for
	// good: it is running, or stopped with its cleanup done.
	classified     chan struct{}
	classifiedOnce sync.Once
	// reaped is closed once the death of the shim was handled in full.
	reaped chan struct{}
	// deleteForwarded is closed when the init TaskDelete was forwarded.
	deleteForwarded     chan struct{}
	deleteForwardedOnce sync.Once

	// lastSeq is the highest sequence number forwarded. Owned by the event
	// loop; loops of successive connections never overlap (run waits).
	lastSeq uint64

	deleteMu sync.Mutex // one Delete of this task at a time

	mu      sync.Mutex         // guards the fields below
	state   state              // see the diagram above
	client  *ttrpc.Client      // the current connection, or a closed stand-in
	task    shimapi.TaskClient // over client
	shimPid int                // 0 until connected
	taskPid uint32             // init pid, 0 before Create
	exit    shimapi.ExitStatus // valid in stateStopped
}

func (s *Supervisor) newShim(ns, id, runtime string, st state) *Shim {
	ctx, cancel := context.WithCancel(s.ctx)
	sh := &Shim{
		Namespace: ns, ID: id, Bundle: s.bundle(ns, id), Runtime: runtime,
		s: s, ctx: ctx, cancel: cancel,
		classified:      make(chan struct{}),
		reaped:          make(chan struct{}),
		deleteForwarded: make(chan struct{}),
		state:           st,
	}
	sh.client, sh.task = sh.standIn()
	return sh
}

// Task returns the shim's ttrpc client. Call it for each use rather than
// keeping it: after a reconnect it is another client. While the shim is
// being restored or cleaned up, and once it is gone, every call fails with
// an error wrapping errdefs.ErrUnavailable, or errdefs.ErrNotFound once the
// task is stopped (see Exited).
func (sh *Shim) Task() shimapi.TaskClient {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.task
}

// Exited returns the exit status of a task whose shim is gone, and true;
// while the shim lives (or its fate is still being settled) it returns
// false.
func (sh *Shim) Exited() (shimapi.ExitStatus, bool) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.exit, sh.state == stateStopped
}

// TaskPid returns the pid of the task's init process as last reported by
// the shim, or 0.
func (sh *Shim) TaskPid() uint32 {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.taskPid
}

// String names the task, for messages.
func (sh *Shim) String() string { return sh.Namespace + "/" + sh.ID }

func (sh *Shim) visible() bool {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.state != stateCreating
}

func (sh *Shim) getState() state {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.state
}

// setState moves to st when the shim is in one of from; it reports whether
// it did.
func (sh *Shim) setState(st state, from ...state) bool {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for _, f := range from {
		if sh.state == f {
			sh.state = st
			return true
		}
	}
	return false
}

func (sh *Shim) markClassified() { sh.classifiedOnce.Do(func() { close(sh.classified) }) }

// errGone is the error of a call to a shim that is not connected.
func (sh *Shim) errGone() error {
	switch st := sh.getState(); st {
	case stateStopped:
		return fmt.Errorf("task %s: shim has exited: %w", sh, errdefs.ErrNotFound)
	case stateDeleting:
		return fmt.Errorf("task %s: deleted: %w", sh, errdefs.ErrNotFound)
	default:
		return fmt.Errorf("task %s: shim not connected (%v): %w", sh, st, errdefs.ErrUnavailable)
	}
}

// callErrors is the innermost client interceptor: a call on a connection
// that closed fails with the class of the shim's state rather than with
// ttrpc's bare ErrClosed.
func (sh *Shim) callErrors(ctx context.Context, req *ttrpc.Request, resp *ttrpc.Response, _ *ttrpc.UnaryClientInfo, invoker ttrpc.Invoker) error {
	err := invoker(ctx, req, resp)
	if err != nil && errors.Is(err, ttrpc.ErrClosed) {
		return sh.errGone()
	}
	return err
}

// standIn returns a client for a shim that is not connected: every call
// fails with errGone, without touching the (closed) connection.
func (sh *Shim) standIn() (*ttrpc.Client, shimapi.TaskClient) {
	a, b := net.Pipe()
	a.Close()
	b.Close()
	c := ttrpc.NewClient(a, ttrpc.WithUnaryClientInterceptor(
		func(context.Context, *ttrpc.Request, *ttrpc.Response, *ttrpc.UnaryClientInfo, ttrpc.Invoker) error {
			return sh.errGone()
		}))
	return c, shimapi.NewTaskClient(c)
}

// conn is one connection to a live shim.
type conn struct {
	client *ttrpc.Client
	task   shimapi.TaskClient
	closed chan struct{} // closed when the connection ended, for any reason
	info   *shimapi.ConnectResponse
}

// connect dials the shim and calls Connect, both bounded by ctx.
func (sh *Shim) connect(ctx context.Context) (*conn, error) {
	c, err := openConn(ctx, sh.Bundle, sh.ID, sh.s.cfg.CallTimeout, sh.callErrors)
	if err != nil {
		return nil, fmt.Errorf("connect to shim of %s: %w", sh, err)
	}
	if c.info.Version != shimapi.Version {
		sh.s.log.Warn("shim speaks another API version", "task", sh.String(), "shim_version", c.info.Version, "version", shimapi.Version)
	}
	return c, nil
}

// openConn dials the shim serving folder dir and calls Connect, both
// bounded by ctx. Each later call without a deadline gets callTimeout
// (callDeadline); intercept is the innermost client interceptor.
func openConn(ctx context.Context, dir, id string, callTimeout time.Duration, intercept ttrpc.UnaryClientInterceptor) (*conn, error) {
	closed := make(chan struct{})
	c, task, err := shimapi.Connect(ctx, dir,
		ttrpc.WithChainUnaryClientInterceptor(callDeadline(callTimeout), intercept),
		ttrpc.WithOnClose(func() { close(closed) }))
	if err != nil {
		return nil, err
	}
	info, err := task.Connect(ctx, &shimapi.ConnectRequest{Id: id})
	if err != nil {
		c.Close()
		return nil, err
	}
	return &conn{client: c, task: task, closed: closed, info: info}, nil
}

// useConn makes c the shim's current connection.
func (sh *Shim) useConn(c *conn) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.client, sh.task = c.client, c.task
	sh.shimPid = int(c.info.ShimPid)
	if c.info.TaskPid != 0 {
		sh.taskPid = c.info.TaskPid
	}
}

// dropConn replaces the current connection by a stand-in.
func (sh *Shim) dropConn() {
	client, task := sh.standIn()
	sh.mu.Lock()
	old := sh.client
	sh.client, sh.task = client, task
	sh.mu.Unlock()
	old.Close()
}
