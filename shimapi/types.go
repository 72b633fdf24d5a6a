package shimapi

import (
	eventsv1 "github.com/berthrt/berth/proto/events/v1"
	typesv1 "github.com/berthrt/berth/proto/types/v1"
)

// The messages the shim API shares with the daemon API live in
// proto/types/v1 and proto/events/v1; these aliases keep the shim's Go
// code in its own terms.
type (
	Mount       = typesv1.Mount
	Stdio       = typesv1.Stdio
	Status      = typesv1.Status
	ProcessInfo = typesv1.ProcessInfo
	Metrics     = typesv1.Metrics
	Pressure    = typesv1.Pressure
	BlockIO     = typesv1.BlockIO

	TaskCreate      = eventsv1.TaskCreate
	TaskStart       = eventsv1.TaskStart
	TaskExit        = eventsv1.TaskExit
	TaskDelete      = eventsv1.TaskDelete
	TaskOOM         = eventsv1.TaskOOM
	TaskExecAdded   = eventsv1.TaskExecAdded
	TaskExecStarted = eventsv1.TaskExecStarted
	TaskPaused      = eventsv1.TaskPaused
	TaskResumed     = eventsv1.TaskResumed
)

// The process statuses.
const (
	Status_STATUS_UNKNOWN = typesv1.Status_STATUS_UNKNOWN
	Status_STATUS_CREATED = typesv1.Status_STATUS_CREATED
	Status_STATUS_RUNNING = typesv1.Status_STATUS_RUNNING
	Status_STATUS_PAUSED  = typesv1.Status_STATUS_PAUSED
	Status_STATUS_STOPPED = typesv1.Status_STATUS_STOPPED
)
