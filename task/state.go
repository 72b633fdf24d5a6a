package task

import (
	"fmt"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/shimapi"
)

// Status is the lifecycle state of a process.
type Status int

// The states of a process. Exec processes are never paused themselves; they
// follow their container.
const (
	Created Status = iota // exists; init runs no user code yet, an exec is only registered
	Running
	Paused
	Stopped // exited; the exit status is known
	Deleted
)

func (s Status) String() string {
	switch s {
	case Created:
		return "created"
	case Running:
		return "running"
	case Paused:
		return "paused"
	case Stopped:
		return "stopped"
	case Deleted:
		return "deleted"
	}
	return fmt.Sprintf("status(%d)", int(s))
}

// API maps the status to the shim API's enum.
func (s Status) API() shimapi.Status {
	switch s {
	case Created:
		return shimapi.Status_STATUS_CREATED
	case Running:
		return shimapi.Status_STATUS_RUNNING
	case Paused:
		return shimapi.Status_STATUS_PAUSED
	case Stopped:
		return shimapi.Status_STATUS_STOPPED
	}
	return shimapi.Status_STATUS_UNKNOWN
}

// Op is an operation that moves a process between states.
type Op string

// The operations of the state machine.
const (
	OpStart  Op = "start"
	OpPause  Op = "pause"
	OpResume Op = "resume"
	OpKill   Op = "kill"
	OpExit   Op = "exit"
	OpDelete Op = "delete"
)

// transitions is the whole state machine: for each state, the operations it
// allows and the state each leads to. Kill leaves the state as it is; the
// exit that may follow is its own transition.
var transitions = map[Status]map[Op]Status{
	Created: {OpStart: Running, OpKill: Created, OpExit: Stopped, OpDelete: Deleted},
	Running: {OpPause: Paused, OpKill: Running, OpExit: Stopped},
	Paused:  {OpResume: Running, OpKill: Paused, OpExit: Stopped},
	Stopped: {OpDelete: Deleted},
	Deleted: {},
}

// TransitionError is returned for an operation that the process's state
// does not allow. It is a FailedPrecondition, or NotFound once the process
// is gone (killing a stopped process, anything on a deleted one).
type TransitionError struct {
	Process string // "init" or the exec id
	From    Status
	Op      Op
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("process %s: cannot %s a %s process", e.Process, e.Op, e.From)
}

// Unwrap gives the error's class.
func (e *TransitionError) Unwrap() error {
	if e.From == Deleted || (e.From == Stopped && e.Op == OpKill) {
		return errdefs.ErrNotFound
	}
	return errdefs.ErrFailedPrecondition
}

// next returns the state op leads to from s, or a *TransitionError.
func next(process string, s Status, op Op) (Status, error) {
	to, ok := transitions[s][op]
	if !ok {
		return s, &TransitionError{Process: process, From: s, Op: op}
	}
	return to, nil
}
