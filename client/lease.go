package client

import (
	"context"
	"fmt"
	"time"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/gc"
	"github.com/berthrt/berth/internal/apiconv"
	"github.com/berthrt/berth/leases"
	gcv1 "github.com/berthrt/berth/proto/gc/v1"
	leasesv1 "github.com/berthrt/berth/proto/leases/v1"
)

// DefaultLeaseExpiration is how long a lease made by WithLease protects
// what it holds when its done function is never called (the client
// crashed).
const DefaultLeaseExpiration = 24 * time.Hour

// LeasesService returns the daemon's leases as a leases.Manager, the
// interface of the daemon's own store. Calls act in the namespace of their
// context, else the client's default.
func (c *Client) LeasesService() leases.Manager {
	return &remoteLeases{client: c, api: leasesv1.NewLeasesClient(c.api().ttrpc)}
}

// LeaseOpt configures the lease WithLease makes.
type LeaseOpt func(*leases.Lease) error

// WithLeaseID names the lease instead of letting the daemon make up an id.
func WithLeaseID(id string) LeaseOpt {
	return func(l *leases.Lease) error {
		l.ID = id
		return nil
	}
}

// WithLeaseLabels adds labels to the lease.
func WithLeaseLabels(labels map[string]string) LeaseOpt {
	return func(l *leases.Lease) error {
		if l.Labels == nil {
			l.Labels = map[string]string{}
		}
		for k, v := range labels {
			l.Labels[k] = v
		}
		return nil
	}
}

// WithLeaseExpiration sets when the lease expires, d from now
// (DefaultLeaseExpiration without this option).
func WithLeaseExpiration(d time.Duration) LeaseOpt {
	return func(l *leases.Lease) error {
		if d <= 0 {
			return fmt.Errorf("lease expiration %v: must be positive: %w", d, errdefs.ErrInvalidArgument)
		}
		return WithLeaseLabels(map[string]string{leases.ExpireLabel: time.Now().Add(d).UTC().Format(time.RFC3339Nano)})(l)
	}
}

// WithLease returns ctx with a new lease on it, so that what is written
// under it is kept until done deletes the lease (or it expires), and done.
// When ctx carries a lease already, WithLease returns ctx as it is and a
// done that does nothing: the outer lease holds everything.
func (c *Client) WithLease(ctx context.Context, opts ...LeaseOpt) (context.Context, func(context.Context) error, error) {
	if _, ok := leases.FromContext(ctx); ok {
		return ctx, func(context.Context) error { return nil }, nil
	}
	var l leases.Lease
	if err := WithLeaseExpiration(DefaultLeaseExpiration)(&l); err != nil {
		return nil, nil, err
	}
	for _, opt := range opts {
		if err := opt(&l); err != nil {
			return nil, nil, err
		}
	}
	created, err := c.LeasesService().Create(ctx, l)
	if err != nil {
		return nil, nil, err
	}
	done := func(ctx context.Context) error {
		return c.LeasesService().Delete(leases.WithoutLease(ctx), created.ID)
	}
	return leases.WithLease(ctx, created.ID), done, nil
}

// GarbageCollect runs one garbage collection in the daemon now and says
// what it removed.
func (c *Client) GarbageCollect(ctx context.Context) (gc.Stats, error) {
	resp, err := gcv1.NewGCClient(c.api().ttrpc).Collect(ctx, &gcv1.CollectRequest{})
	if err != nil {
		return gc.Stats{}, err
	}
	return apiconv.GCStatsFromProto(resp), nil
}

// leaseOf returns the lease of ctx, "" for none.
func leaseOf(ctx context.Context) string {
	id, _ := leases.FromContext(ctx)
	return id
}

// remoteLeases is a leases.Manager over the leases API.
type remoteLeases struct {
	client *Client
	api    leasesv1.LeasesClient
}

func (r *remoteLeases) Create(ctx context.Context, l leases.Lease) (leases.Lease, error) {
	resp, err := r.api.Create(ctx, &leasesv1.CreateRequest{Id: l.ID, Labels: l.Labels})
	if err != nil {
		return leases.Lease{}, err
	}
	return apiconv.LeaseFromProto(resp.GetLease()), nil
}

func (r *remoteLeases) Delete(ctx context.Context, id string) error {
	_, err := r.api.Delete(ctx, &leasesv1.DeleteRequest{Id: id})
	return err
}

// DeleteLeaseSync deletes the lease id and returns once a garbage
// collection that followed the delete has finished.
func (c *Client) DeleteLeaseSync(ctx context.Context, id string) error {
	_, err := leasesv1.NewLeasesClient(c.api().ttrpc).Delete(ctx, &leasesv1.DeleteRequest{Id: id, Sync: true})
	return err
}

func (r *remoteLeases) List(ctx context.Context, filters ...string) ([]leases.Lease, error) {
	ns, err := r.client.namespace(ctx)
	if err != nil {
		return nil, err
	}
	stream, err := r.api.ListStream(ctx, &leasesv1.ListRequest{Filters: filters, Namespace: ns})
	if err != nil {
		return nil, streamError("list leases", err)
	}
	ls, err := receiveAll("list leases", stream.Recv, (*leasesv1.ListResponse).GetLeases)
	if err != nil {
		return nil, err
	}
	var out []leases.Lease
	for _, l := range ls {
		out = append(out, apiconv.LeaseFromProto(l))
	}
	return out, nil
}

func (r *remoteLeases) AddResource(ctx context.Context, id string, res leases.Resource) error {
	_, err := r.api.AddResource(ctx, &leasesv1.AddResourceRequest{Id: id, Resource: apiconv.ResourceToProto(res)})
	return err
}

func (r *remoteLeases) DeleteResource(ctx context.Context, id string, res leases.Resource) error {
	_, err := r.api.DeleteResource(ctx, &leasesv1.DeleteResourceRequest{Id: id, Resource: apiconv.ResourceToProto(res)})
	return err
}

func (r *remoteLeases) ListResources(ctx context.Context, id string) ([]leases.Resource, error) {
	resp, err := r.api.ListResources(ctx, &leasesv1.ListResourcesRequest{Id: id})
	if err != nil {
		return nil, err
	}
	var out []leases.Resource
	for _, res := range resp.GetResources() {
		out = append(out, apiconv.ResourceFromProto(res))
	}
	return out, nil
}
