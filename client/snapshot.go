package client

import (
	snapshotsv1 "github.com/berthrt/berth/proto/snapshots/v1"
	"github.com/berthrt/berth/snapshots"
	"github.com/berthrt/berth/snapshots/proxy"
)

// SnapshotService returns the daemon's snapshotter name ("overlayfs",
// "native", a proxy plugin's name; "" for the daemon's default) as a
// snapshots.Snapshotter, the interface of the local ones, so that code
// written against one runs against the other. Calls act in the namespace
// of their context, else the client's default; a namespace sees only the
// snapshots made in it. Each call goes over the client's current
// connection; Close does nothing (Client.Close ends the connection).
func (c *Client) SnapshotService(name string) snapshots.Snapshotter {
	return proxy.NewFromClient(func() snapshotsv1.SnapshotsClient {
		return snapshotsv1.NewSnapshotsClient(c.api().ttrpc)
	}, name, proxy.WithNamespace(c.namespace))
}
