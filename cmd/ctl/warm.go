package main

import (
	"slices"
	"strings"

	"github.com/containerd/ttrpc"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthrt/berth/internal/warm"
	containersv1 "github.com/berthrt/berth/proto/containers/v1"
	contentv1 "github.com/berthrt/berth/proto/content/v1"
	imagesv1 "github.com/berthrt/berth/proto/images/v1"
	introspectionv1 "github.com/berthrt/berth/proto/introspection/v1"
	tasksv1 "github.com/berthrt/berth/proto/tasks/v1"
)

// warmRun does ahead, in a goroutine of its own that rootCommandFor starts
// before it builds the command (args are the command line's), the one-time work that `run` would
// otherwise do on its critical path, each the first time it is needed:
// encoding/json building its encoders for the spec's types (on the first
// Marshal of a spec), and protobuf initialising each message type of the
// calls of a run (on its first Marshal or Unmarshal). Both are guarded by
// once-only initialisation in their packages, so whichever goroutine comes
// first does the work and the other waits for it: nothing is done twice,
// and the CPU time is the same. While the main goroutine parses the
// command line, connects, builds the spec and waits for the daemon's
// answers, this one uses the second CPU; in a `run --rm` the two took
// 15 % of berthctl's CPU time (bench/README.md).
//
// The messages are ttrpc's envelope (request, response, metadata) and
// those of Containers.Create, Tasks.Create, Tasks.Wait, Tasks.Delete and
// Containers.Delete, in that order, with the types they contain. A run of
// an image (args without --rootfs: a guess that costs time, never
// correctness, when wrong) first asks for the image, the default
// snapshotter, the manifest and config, which it decodes: those come
// first (its snapshot comes with Containers.Create, whose request and
// reply nest its types). A type missing here costs time, not correctness.
// Package warm does the work; the spare shim warms its own side the same
// way (task.Warm).
func warmRun(args []string) {
	rootfs := slices.ContainsFunc(args, func(a string) bool { return a == "--rootfs" || strings.HasPrefix(a, "--rootfs=") })
	warm.Protos(&ttrpc.Request{}, &ttrpc.Response{}, &ttrpc.KeyValue{})
	if !rootfs {
		warm.Protos(&imagesv1.GetImageRequest{}, &imagesv1.GetImageResponse{},
			&introspectionv1.ServicesRequest{}, &introspectionv1.ServicesResponse{},
			&contentv1.ReadContentRequest{}, &contentv1.ReadContentResponse{})
		warm.JSON(&ocispec.Manifest{}, "{}")
		warm.JSON(&ocispec.Image{}, "{}")
	}
	warm.JSON(&specs.Spec{}, "")
	warm.Protos(&containersv1.CreateContainerRequest{}, &containersv1.CreateContainerResponse{})
	warm.Protos(&tasksv1.CreateTaskRequest{}, &tasksv1.CreateTaskResponse{},
		&tasksv1.WaitRequest{}, &tasksv1.WaitResponse{},
		&tasksv1.DeleteTaskRequest{}, &tasksv1.DeleteResponse{},
		&containersv1.DeleteContainerRequest{}, &containersv1.DeleteContainerResponse{})
}
