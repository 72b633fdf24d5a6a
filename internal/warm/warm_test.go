package warm

import (
	"testing"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/reflect/protoreflect"

	containersv1 "github.com/berthrt/berth/proto/containers/v1"
	tasksv1 "github.com/berthrt/berth/proto/tasks/v1"
)

// TestProtosReachesNestedTypes checks that the walk reaches the types
// nested in a message's fields, maps' values included, which protobuf
// would otherwise build one by one on their first use.
func TestProtosReachesNestedTypes(t *testing.T) {
	seen := map[protoreflect.FullName]bool{}
	protos(seen, &containersv1.CreateContainerRequest{}, &tasksv1.CreateTaskRequest{}, &ttrpc.Request{})
	for _, name := range []protoreflect.FullName{
		"berth.services.containers.v1.Container",
		"berth.services.containers.v1.Container.Runtime",
		"google.protobuf.Any",
		"google.protobuf.Timestamp",
		"berth.types.v1.Mount",
		"berth.types.v1.Stdio",
		"ttrpc.KeyValue",
	} {
		if !seen[name] {
			t.Errorf("%s not reached; reached %v", name, seen)
		}
	}
}

// TestJSONBadSample: a sample that does not decode builds less, and
// fails nothing.
func TestJSONBadSample(t *testing.T) {
	var v struct{ A []int }
	JSON(&v, `{"A": "not a list"`)
	JSON(&v, `{"A": [1, 2]}`)
	if len(v.A) != 2 {
		t.Errorf("sample decoded into %v", v)
	}
}
