package client

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/apiconv"
	"github.com/berthrt/berth/io/cio"
	tasksv1 "github.com/berthrt/berth/proto/tasks/v1"
	"github.com/berthrt/berth/shimapi"
)

// Process is one process of a task: its init process (the Task itself) or
// an exec process.
type Process interface {
	// ID is the container id for a task, the exec id for an exec.
	ID() string
	// Pid is the process's pid: valid after NewTask for a task, after
	// Start for an exec.
	Pid() uint32
	// Start runs the process. On failure its IO stays open: Delete
	// cleans it up. With an IO of cio.NewCreator that has stdin, the end
	// of the caller's stdin reader is from then on the end of the
	// process's stdin (Start arranges a CloseIO for it).
	Start(ctx context.Context) error
	// Wait returns a channel that receives exactly one ExitStatus: the
	// process's exit, or an error (also when ctx ends first). Call it
	// before Start so that no exit can be missed; waiting after the exit
	// works too.
	Wait(ctx context.Context) (<-chan ExitStatus, error)
	// Kill sends sig to the process.
	Kill(ctx context.Context, sig syscall.Signal, opts ...KillOpts) error
	// Delete removes a stopped (or never started) process and then
	// cleans up its IO, once what it wrote has been copied.
	Delete(ctx context.Context, opts ...ProcessDeleteOpts) (*ExitStatus, error)
	// CloseIO closes the process's streams named by opts. Stdin: the
	// process reads what its FIFO holds, then EOF. Closing a client's end
	// of the stdin FIFO, or the client going away, does not end it: the
	// shim keeps a process's stdin open across clients (see io/stdio).
	CloseIO(ctx context.Context, opts ...IOCloserOpts) error
	// ReopenLog reopens the process's crilog:// output file at its path
	// (see cio.CRILog), after the file was rotated away; a failed
	// precondition when its output is no crilog.
	ReopenLog(ctx context.Context) error
	// Resize changes the window size of the process's terminal.
	Resize(ctx context.Context, width, height uint32) error
	// Status reports the process's state and, once stopped, its exit.
	Status(ctx context.Context) (Status, error)
	// IO is the process's stdio as this client holds it; nil when the
	// process was loaded without an Attach.
	IO() cio.IO
}

// ProcessStatus is the state of a process.
type ProcessStatus string

// The states of a process.
const (
	// Created: exists but has not run user code (init), or is registered
	// but not started (exec).
	Created ProcessStatus = "created"
	Running ProcessStatus = "running"
	Paused  ProcessStatus = "paused"
	// Stopped: exited; the exit status is known.
	Stopped ProcessStatus = "stopped"
	Unknown ProcessStatus = "unknown"
)

// Status is a process's state and, once Stopped, how it exited.
type Status struct {
	Status     ProcessStatus
	ExitStatus uint32
	ExitTime   time.Time
}

// process implements Process for a task's init (execID empty) and for
// exec processes.
type process struct {
	client      *Client
	containerID string
	execID      string
	pid         atomic.Uint32
	io          cio.IO // nil without stdio; owned: closed by Delete
	// unattached are the FIFOs the daemon reports for a process loaded
	// without attaching (io nil): their creator may be gone (a client
	// that crashed), so Delete removes them, or nobody would.
	unattached *cio.FIFOSet
}

func newProcess(c *Client, containerID, execID string, pid uint32, pio cio.IO) *process {
	p := &process{client: c, containerID: containerID, execID: execID, io: pio}
	p.pid.Store(pid)
	return p
}

func (p *process) ID() string {
	if p.execID != "" {
		return p.execID
	}
	return p.containerID
}

func (p *process) Pid() uint32 { return p.pid.Load() }

func (p *process) IO() cio.IO { return p.io }

func (p *process) Start(ctx context.Context) error {
	r, err := p.client.api().tasks.Start(ctx, &tasksv1.StartRequest{ContainerId: p.containerID, ExecId: p.execID})
	if err != nil {
		return err
	}
	p.pid.Store(r.Pid)
	p.closeStdinAtEOF(ctx)
	return nil
}

// closeIOTimeout bounds the CloseIO that follows the end of a caller's
// stdin.
const closeIOTimeout = 10 * time.Second

// stdinEOFNotifier is an IO that reports the end of the caller's stdin
// reader: the IO of cio.NewCreator.
type stdinEOFNotifier interface {
	OnStdinEOF(fn func())
}

// closeStdinAtEOF makes the end of the caller's stdin reader the end of the
// process's stdin, with a CloseIO once all of it is in the FIFO: closing
// the FIFO alone is no EOF for the process. ctx gives the namespace.
func (p *process) closeStdinAtEOF(ctx context.Context) {
	n, ok := p.io.(stdinEOFNotifier)
	if !ok {
		return
	}
	ctx = context.WithoutCancel(ctx)
	n.OnStdinEOF(func() {
		ctx, cancel := context.WithTimeout(ctx, closeIOTimeout)
		defer cancel()
		// An error has nobody to go to: it means that the process
		// has exited or been deleted meanwhile, and needs no EOF.
		_ = p.CloseIO(ctx, WithStdinCloser)
	})
}

func (p *process) Wait(ctx context.Context) (<-chan ExitStatus, error) {
	c := make(chan ExitStatus, 1) // never blocks the sender
	go func() {
		// Ends when the process exits or ctx ends. Waiting is
		// idempotent, so a daemon that restarts meanwhile (a crash, an
		// upgrade) is waited for and asked again: it answers with the
		// same exit, which the shim keeps.
		retry := waitRetryMin
		for {
			r, err := p.client.api().tasks.Wait(ctx, &tasksv1.WaitRequest{ContainerId: p.containerID, ExecId: p.execID})
			if err == nil {
				c <- ExitStatus{code: r.ExitStatus, exitedAt: apiconv.TimeFromProto(r.ExitedAt)}
				return
			}
			if !errdefs.IsUnavailable(err) || ctx.Err() != nil || p.client.isClosed() {
				c <- exitError(fmt.Errorf("wait for %s: %w", p.name(), err))
				return
			}
			select {
			case <-time.After(retry):
				retry = min(2*retry, waitRetryMax)
			case <-ctx.Done():
				c <- exitError(fmt.Errorf("wait for %s: %w", p.name(), ctx.Err()))
				return
			}
		}
	}()
	return c, nil
}

// Bounds of the pause between attempts of a Wait while the daemon is away.
const (
	waitRetryMin = 50 * time.Millisecond
	waitRetryMax = time.Second
)

func (p *process) Kill(ctx context.Context, sig syscall.Signal, opts ...KillOpts) error {
	info := KillInfo{ExecID: p.execID}
	for _, o := range opts {
		if err := o(ctx, &info); err != nil {
			return err
		}
	}
	_, err := p.client.api().tasks.Kill(ctx, &tasksv1.KillRequest{
		ContainerId: p.containerID,
		ExecId:      info.ExecID,
		Signal:      uint32(sig),
		All:         info.All,
	})
	return err
}

// Delete is shared by the task (process) and exec processes; self is the
// Process the options see.
func (p *process) delete(ctx context.Context, self Process, opts []ProcessDeleteOpts) (*ExitStatus, error) {
	for _, o := range opts {
		if err := o(ctx, self); err != nil {
			return nil, err
		}
	}
	var (
		r   *tasksv1.DeleteResponse
		err error
	)
	if p.execID == "" {
		r, err = p.client.api().tasks.Delete(ctx, &tasksv1.DeleteTaskRequest{ContainerId: p.containerID})
	} else {
		r, err = p.client.api().tasks.DeleteProcess(ctx, &tasksv1.DeleteProcessRequest{ContainerId: p.containerID, ExecId: p.execID})
	}
	if err != nil {
		if errdefs.IsNotFound(err) {
			// Deleted already: a delete of ours that a daemon crash cut,
			// which the restarted daemon finished. Nothing writes to the
			// IO any more, and no later call would free it.
			err = errors.Join(err, p.closeIO())
		}
		return nil, err
	}
	st := &ExitStatus{code: r.ExitStatus, exitedAt: apiconv.TimeFromProto(r.ExitedAt)}
	if err := p.closeIO(); err != nil {
		return st, fmt.Errorf("%s deleted, but its stdio: %w", p.name(), err)
	}
	return st, nil
}

func (p *process) Delete(ctx context.Context, opts ...ProcessDeleteOpts) (*ExitStatus, error) {
	return p.delete(ctx, p, opts)
}

// closeIO ends the IO of a deleted process. The shim closed its ends when
// it deleted the process, so after Cancel the copiers stop once the FIFOs
// are empty: nothing written is lost and nothing waits forever.
func (p *process) closeIO() error {
	if p.io == nil {
		if p.unattached != nil {
			return p.unattached.Close()
		}
		return nil
	}
	p.io.Cancel()
	p.io.Wait()
	return p.io.Close()
}

func (p *process) CloseIO(ctx context.Context, opts ...IOCloserOpts) error {
	var info IOCloseInfo
	for _, o := range opts {
		o(&info)
	}
	_, err := p.client.api().tasks.CloseIO(ctx, &tasksv1.CloseIORequest{ContainerId: p.containerID, ExecId: p.execID, Stdin: info.Stdin})
	return err
}

func (p *process) ReopenLog(ctx context.Context) error {
	_, err := p.client.api().tasks.ReopenLog(ctx, &tasksv1.ReopenLogRequest{ContainerId: p.containerID, ExecId: p.execID})
	return err
}

func (p *process) Resize(ctx context.Context, width, height uint32) error {
	_, err := p.client.api().tasks.ResizePty(ctx, &tasksv1.ResizePtyRequest{
		ContainerId: p.containerID, ExecId: p.execID, Width: width, Height: height,
	})
	return err
}

func (p *process) Status(ctx context.Context) (Status, error) {
	r, err := getProcess(ctx, p.client, p.containerID, p.execID)
	if err != nil {
		return Status{}, err
	}
	return Status{Status: statusOf(r.Status), ExitStatus: r.ExitStatus, ExitTime: apiconv.TimeFromProto(r.ExitedAt)}, nil
}

func (p *process) name() string {
	if p.execID != "" {
		return fmt.Sprintf("exec %q of task %q", p.execID, p.containerID)
	}
	return fmt.Sprintf("task %q", p.containerID)
}

func statusOf(s shimapi.Status) ProcessStatus {
	switch s {
	case shimapi.Status_STATUS_CREATED:
		return Created
	case shimapi.Status_STATUS_RUNNING:
		return Running
	case shimapi.Status_STATUS_PAUSED:
		return Paused
	case shimapi.Status_STATUS_STOPPED:
		return Stopped
	}
	return Unknown
}

// invalid is an error of class ErrInvalidArgument about what.
func invalid(what string) error {
	return fmt.Errorf("%s: %w", what, errdefs.ErrInvalidArgument)
}
