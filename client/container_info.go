package client

import (
	"maps"
	"time"

	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	containersv1 "github.com/berthrt/berth/proto/containers/v1"
)

// ContainerInfo is the record the daemon keeps of a container.
type ContainerInfo struct {
	ID     string
	Labels map[string]string
	// Image is the name of the image the container was made from, if any.
	Image   string
	Runtime RuntimeInfo
	// Spec is the OCI runtime spec, JSON-encoded; Container.Spec decodes it.
	Spec []byte
	// Snapshotter and SnapshotKey name the snapshot of the root
	// filesystem, when it comes from an image.
	Snapshotter string
	SnapshotKey string
	CreatedAt   time.Time
	UpdatedAt   time.Time
	// Extensions are data of clients, stored as given.
	Extensions map[string]*anypb.Any
}

// RuntimeInfo names the OCI runtime of a container.
type RuntimeInfo struct {
	// Name is "runc" or the absolute path of a binary with runc's command
	// line; empty means the daemon's default.
	Name    string
	Options *anypb.Any
}

func containerToProto(c *ContainerInfo) *containersv1.Container {
	return &containersv1.Container{
		Id:          c.ID,
		Labels:      maps.Clone(c.Labels),
		Image:       c.Image,
		Runtime:     &containersv1.Container_Runtime{Name: c.Runtime.Name, Options: c.Runtime.Options},
		Spec:        c.Spec,
		Snapshotter: c.Snapshotter,
		SnapshotKey: c.SnapshotKey,
		Extensions:  maps.Clone(c.Extensions),
	}
}

func containerFromProto(c *containersv1.Container) ContainerInfo {
	info := ContainerInfo{
		ID:          c.GetId(),
		Labels:      c.GetLabels(),
		Image:       c.GetImage(),
		Spec:        c.GetSpec(),
		Snapshotter: c.GetSnapshotter(),
		SnapshotKey: c.GetSnapshotKey(),
		CreatedAt:   timeOf(c.GetCreatedAt()),
		UpdatedAt:   timeOf(c.GetUpdatedAt()),
		Extensions:  c.GetExtensions(),
	}
	if r := c.GetRuntime(); r != nil {
		info.Runtime = RuntimeInfo{Name: r.Name, Options: r.Options}
	}
	return info
}

// timeOf is ts as a time, the zero time when ts is unset.
func timeOf(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}
