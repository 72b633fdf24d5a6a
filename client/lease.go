package client

import (
	"context"
	"fmt"
	"time"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/leases"
	gcv1 "github.com/berthrt/berth/proto/gc/v1"
	leasesv1 "github.com/berthrt/berth/proto/leases/v1"
	"github.com/berthrt/berth/storage/metadata"
)

// DefaultLeaseExpiration is how long a lease made by WithLease protects
// what it holds when its done function is never called (the client
// crashed).
const DefaultLeaseExpiration = 24 * time.Hour

// LeasesService returns the daemon's leases as a metadata.LeaseManager, the
// interface of the daemon's own store. Calls act in the namespace of their
// context, else the client's default.
func (c *Client) LeasesService() metadata.LeaseManager {
	return &remoteLeases{api: leasesv1.NewLeasesClient(c.api().ttrpc)}
}

// LeaseOpt configures the lease WithLease makes.
type LeaseOpt func(*metadata.Lease) error

// WithLeaseID names the lease instead of letting the daemon make up an id.
func WithLeaseID(id string) LeaseOpt {
	return func(l *metadata.Lease) error {
		l.ID = id
		return nil
	}
}

// WithLeaseLabels adds labels to the lease.
func WithLeaseLabels(labels map[string]string) LeaseOpt {
	return func(l *metadata.Lease) error {
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
	return func(l *metadata.Lease) error {
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
	var l metadata.Lease
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
func (c *Client) GarbageCollect(ctx context.Context) (metadata.GCStats, error) {
	resp, err := gcv1.NewGCClient(c.api().ttrpc).Collect(ctx, &gcv1.CollectRequest{})
	if err != nil {
		return metadata.GCStats{}, err
	}
	return metadata.GCStats{
		ContentRecords: int(resp.GetContentRecords()),
		Blobs:          int(resp.GetBlobs()),
		BlobBytes:      resp.GetBlobBytes(),
		Ingests:        int(resp.GetIngests()),
		Leases:         int(resp.GetLeases()),
		Snapshots:      int(resp.GetSnapshots()),
		Duration:       resp.GetDuration().AsDuration(),
	}, nil
}

// leaseOf returns the lease of ctx, "" for none.
func leaseOf(ctx context.Context) string {
	id, _ := leases.FromContext(ctx)
	return id
}

// remoteLeases is a metadata.LeaseManager over the leases API.
type remoteLeases struct {
	api leasesv1.LeasesService
}

func (r *remoteLeases) Create(ctx context.Context, l metadata.Lease) (metadata.Lease, error) {
	resp, err := r.api.Create(ctx, &leasesv1.CreateRequest{Id: l.ID, Labels: l.Labels})
	if err != nil {
		return metadata.Lease{}, err
	}
	return leaseFromProto(resp.GetLease()), nil
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

func (r *remoteLeases) List(ctx context.Context, filters ...string) ([]metadata.Lease, error) {
	resp, err := r.api.List(ctx, &leasesv1.ListRequest{Filters: filters})
	if err != nil {
		return nil, err
	}
	var out []metadata.Lease
	for _, l := range resp.GetLeases() {
		out = append(out, leaseFromProto(l))
	}
	return out, nil
}

func (r *remoteLeases) AddResource(ctx context.Context, id string, res metadata.LeaseResource) error {
	_, err := r.api.AddResource(ctx, &leasesv1.AddResourceRequest{Id: id, Resource: &leasesv1.Resource{Id: res.ID, Type: res.Type}})
	return err
}

func (r *remoteLeases) DeleteResource(ctx context.Context, id string, res metadata.LeaseResource) error {
	_, err := r.api.DeleteResource(ctx, &leasesv1.DeleteResourceRequest{Id: id, Resource: &leasesv1.Resource{Id: res.ID, Type: res.Type}})
	return err
}

func (r *remoteLeases) ListResources(ctx context.Context, id string) ([]metadata.LeaseResource, error) {
	resp, err := r.api.ListResources(ctx, &leasesv1.ListResourcesRequest{Id: id})
	if err != nil {
		return nil, err
	}
	var out []metadata.LeaseResource
	for _, res := range resp.GetResources() {
		out = append(out, metadata.LeaseResource{Type: res.GetType(), ID: res.GetId()})
	}
	return out, nil
}

func leaseFromProto(l *leasesv1.Lease) metadata.Lease {
	out := metadata.Lease{ID: l.GetId(), Labels: l.GetLabels()}
	if l.GetCreatedAt() != nil {
		out.CreatedAt = l.GetCreatedAt().AsTime()
	}
	return out
}
