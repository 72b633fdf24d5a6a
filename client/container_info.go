package client

import "github.com/berthrt/berth/containers"

// ContainerInfo is the record the daemon keeps of a container, the
// containers package's type (Image is the name of the image it was made
// from, Spec the JSON-encoded OCI runtime spec that Container.Spec
// decodes, Snapshotter and SnapshotKey the snapshot of its root
// filesystem when it comes from an image).
type ContainerInfo = containers.Container

// RuntimeInfo names the OCI runtime of a container: "runc" or the absolute
// path of a binary with runc's command line; empty means the daemon's
// default.
type RuntimeInfo = containers.RuntimeInfo
