package apiconv

import (
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthrt/berth/containers"
	containersv1 "github.com/berthrt/berth/proto/containers/v1"
)

// ContainerToProto converts a container record to its API form; zero
// times are left unset (a record the daemon returns always has both).
func ContainerToProto(c containers.Container) *containersv1.Container {
	out := &containersv1.Container{
		Id:          c.ID,
		Labels:      c.Labels,
		Image:       c.Image,
		Runtime:     &containersv1.Container_Runtime{Name: c.Runtime.Name, Options: c.Runtime.Options},
		Spec:        c.Spec,
		Snapshotter: c.Snapshotter,
		SnapshotKey: c.SnapshotKey,
		Extensions:  c.Extensions,
	}
	if !c.CreatedAt.IsZero() {
		out.CreatedAt = timestamppb.New(c.CreatedAt)
	}
	if !c.UpdatedAt.IsZero() {
		out.UpdatedAt = timestamppb.New(c.UpdatedAt)
	}
	return out
}

// ContainerFromProto converts an API container; unset times stay zero (a
// store sets its own on Create and Update).
func ContainerFromProto(c *containersv1.Container) containers.Container {
	return containers.Container{
		ID:          c.GetId(),
		Labels:      c.GetLabels(),
		Image:       c.GetImage(),
		Runtime:     containers.RuntimeInfo{Name: c.GetRuntime().GetName(), Options: c.GetRuntime().GetOptions()},
		Spec:        c.GetSpec(),
		Snapshotter: c.GetSnapshotter(),
		SnapshotKey: c.GetSnapshotKey(),
		CreatedAt:   TimeFromProto(c.GetCreatedAt()),
		UpdatedAt:   TimeFromProto(c.GetUpdatedAt()),
		Extensions:  c.GetExtensions(),
	}
}
