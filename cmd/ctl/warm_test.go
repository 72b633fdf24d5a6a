package main

import (
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	containersv1 "github.com/berthrt/berth/proto/containers/v1"
	tasksv1 "github.com/berthrt/berth/proto/tasks/v1"
)

// TestWarmRun runs the warm-up and checks that it reaches the types nested
// in the calls' messages, which protobuf initialises one by one.
func TestWarmRun(t *testing.T) {
	warmRun(nil)
	warmRun([]string{"run", "--rootfs=/x", "id"})
	seen := map[protoreflect.FullName]bool{}
	warmMessage(&containersv1.CreateContainerRequest{}, seen)
	warmMessage(&tasksv1.CreateTaskRequest{}, seen)
	for _, name := range []protoreflect.FullName{
		"berth.services.containers.v1.Container",
		"berth.services.containers.v1.Container.Runtime",
		"google.protobuf.Any",
		"google.protobuf.Timestamp",
		"berth.types.v1.Mount",
		"berth.types.v1.Stdio",
	} {
		if !seen[name] {
			t.Errorf("%s not reached; reached %v", name, seen)
		}
	}
}
