package client

import (
	"context"
	"errors"
	"io"

	"github.com/berthrt/berth/internal/apiconv"
	containersv1 "github.com/berthrt/berth/proto/containers/v1"
	namespacesv1 "github.com/berthrt/berth/proto/namespaces/v1"
)

// The lists of containers, images, leases and namespaces come over the
// services' ListStream calls: their unary List fails once the list passes
// ttrpc's 4 MiB message limit, which a few containers with large specs
// reach.

// receiveAll reads a server stream to its end and returns the records of
// every message; what names the list in errors.
func receiveAll[M, T any](what string, recv func() (M, error), records func(M) []T) ([]T, error) {
	var out []T
	for {
		m, err := recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, streamError(what, err)
		}
		out = append(out, records(m)...)
	}
}

// ListContainerInfos returns the records of the containers of the
// context's namespace that match any of the filters (all without
// filters), ordered by id. Fields: id, image, runtime.name, snapshotter,
// snapshotkey, labels.<key>.
func (c *Client) ListContainerInfos(ctx context.Context, filters ...string) ([]ContainerInfo, error) {
	ns, err := c.namespace(ctx)
	if err != nil {
		return nil, err
	}
	stream, err := c.api().containers.ListStream(ctx, &containersv1.ListContainersRequest{Filters: filters, Namespace: ns})
	if err != nil {
		return nil, streamError("list containers", err)
	}
	cs, err := receiveAll("list containers", stream.Recv, (*containersv1.ListContainersResponse).GetContainers)
	if err != nil {
		return nil, err
	}
	out := make([]ContainerInfo, len(cs))
	for i, ct := range cs {
		out[i] = apiconv.ContainerFromProto(ct)
	}
	return out, nil
}

// ListNamespaces returns the namespaces that match any of the filters
// (all without filters). Fields: name, labels.<key>.
func (c *Client) ListNamespaces(ctx context.Context, filters ...string) ([]*namespacesv1.Namespace, error) {
	stream, err := c.api().namespaces.ListStream(ctx, &namespacesv1.ListNamespacesRequest{Filters: filters})
	if err != nil {
		return nil, streamError("list namespaces", err)
	}
	return receiveAll("list namespaces", stream.Recv, (*namespacesv1.ListNamespacesResponse).GetNamespaces)
}
