package task

import (
	"github.com/containerd/ttrpc"

	"github.com/berthrt/berth/internal/warm"
	"github.com/berthrt/berth/shimapi"
)

// Warm builds ahead of time what the first run of a task builds on its
// way otherwise (package warm): the protobuf tables of the ttrpc frames,
// of the shim API's messages that a task's life exchanges (Connect,
// Create, Start, State, Kill, Wait, Delete, Shutdown, the event stream
// and the events a task publishes) and encoding/json's tables for the
// bundle's config.json and the exit file. A spare shim calls it while it
// waits to be bound, so that its Create does not. Exec, Stats and the
// other calls a task may never get are left to their first use.
func Warm() {
	warm.Protos(
		&ttrpc.Request{}, &ttrpc.Response{},
		&shimapi.ConnectRequest{}, &shimapi.ConnectResponse{},
		&shimapi.CreateRequest{}, &shimapi.CreateResponse{},
		&shimapi.StartRequest{}, &shimapi.StartResponse{},
		&shimapi.StateRequest{}, &shimapi.StateResponse{},
		&shimapi.KillRequest{},
		&shimapi.WaitRequest{}, &shimapi.WaitResponse{},
		&shimapi.DeleteRequest{}, &shimapi.DeleteResponse{},
		&shimapi.ShutdownRequest{}, &shimapi.Empty{},
		&shimapi.EventsRequest{}, &shimapi.AckEventsRequest{}, &shimapi.Envelope{},
		&shimapi.TaskCreate{}, &shimapi.TaskStart{}, &shimapi.TaskExit{}, &shimapi.TaskDelete{}, &shimapi.TaskOOM{},
	)
	warm.JSON(&bundleSpec{}, bundleSpecSample)
	warm.JSON(&shimapi.ExitStatus{}, exitStatusSample)
}

// The samples reach every object of the types (TestWarmSamples).
const (
	bundleSpecSample = `{"process":{"terminal":false,"user":{"uid":0,"gid":0,"umask":18,"additionalGids":[0],"username":""}},` +
		`"hooks":{"poststop":[{"path":"/bin/true"}]},"linux":{"namespaces":[{"type":"pid","path":""}]}}`
	exitStatusSample = `{"pid":1,"exit_status":0,"exited_at":"2006-01-02T15:04:05Z"}`
)
