package client

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthrt/berth/errdefs"
	leasesv1 "github.com/berthrt/berth/proto/leases/v1"
	snapshotsv1 "github.com/berthrt/berth/proto/snapshots/v1"
	typesv1 "github.com/berthrt/berth/proto/types/v1"
)

// fakeRPCs counts the calls the fake daemon receives, by full method name
// (streams count where their fake serves them), and can hold calls at a
// gate until others have arrived: a client that makes them one after the
// other never gets past it.
type fakeRPCs struct {
	mu    sync.Mutex
	calls map[string]int // guarded by mu
	gate  *rpcGate       // guarded by mu; nil: no gate
}

// rpcGate holds the first call of each of its methods until the first
// call of every one of them is in flight.
type rpcGate struct {
	waiting map[string]bool // methods not yet arrived; guarded by fakeRPCs.mu
	open    chan struct{}   // closed once none is left
}

// gateWait bounds how long a gated call waits for the others before it
// fails: only reached when the client does not make the calls at once.
const gateWait = 10 * time.Second

func newFakeRPCs() *fakeRPCs { return &fakeRPCs{calls: map[string]int{}} }

// setGate holds the first calls of methods until all of them are in flight.
func (f *fakeRPCs) setGate(methods ...string) {
	g := &rpcGate{waiting: map[string]bool{}, open: make(chan struct{})}
	for _, m := range methods {
		g.waiting[m] = true
	}
	f.mu.Lock()
	f.gate = g
	f.mu.Unlock()
}

// counts returns the calls so far, and starts counting again.
func (f *fakeRPCs) counts() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = map[string]int{}
	return c
}

// record counts a call of method and holds it at the gate.
func (f *fakeRPCs) record(ctx context.Context, method string) error {
	f.mu.Lock()
	f.calls[method]++
	g := f.gate
	hold := g != nil && g.waiting[method]
	if hold {
		delete(g.waiting, method)
		if len(g.waiting) == 0 {
			close(g.open)
		}
	}
	f.mu.Unlock()
	if !hold {
		return nil
	}
	select {
	case <-g.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(gateWait):
		f.mu.Lock()
		defer f.mu.Unlock()
		return fmt.Errorf("%s waited %v for %v, which never came while it was in flight: %w", method, gateWait, slices.Sorted(maps.Keys(g.waiting)), errdefs.ErrFailedPrecondition)
	}
}

func (f *fakeRPCs) intercept(ctx context.Context, unmarshal ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, method ttrpc.Method) (any, error) {
	if err := f.record(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return method(ctx, unmarshal)
}

// fakeLeases makes and deletes leases; nothing else.
type fakeLeases struct {
	mu   sync.Mutex
	n    int
	live map[string]bool // guarded by mu
}

func (f *fakeLeases) Create(ctx context.Context, r *leasesv1.CreateRequest) (*leasesv1.CreateResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	id := fmt.Sprintf("lease-%d", f.n)
	f.live[id] = true
	return &leasesv1.CreateResponse{Lease: &leasesv1.Lease{Id: id, Labels: r.Labels}}, nil
}

func (f *fakeLeases) Delete(ctx context.Context, r *leasesv1.DeleteRequest) (*emptypb.Empty, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.live[r.Id] {
		return nil, fmt.Errorf("lease %q: %w", r.Id, errdefs.ErrNotFound)
	}
	delete(f.live, r.Id)
	return &emptypb.Empty{}, nil
}

func (f *fakeLeases) liveCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.live)
}

func (f *fakeLeases) List(context.Context, *leasesv1.ListRequest) (*leasesv1.ListResponse, error) {
	return nil, errdefs.ErrNotImplemented
}

func (f *fakeLeases) ListStream(context.Context, *leasesv1.ListRequest, leasesv1.Leases_ListStreamServer) error {
	return errdefs.ErrNotImplemented
}

func (f *fakeLeases) AddResource(context.Context, *leasesv1.AddResourceRequest) (*emptypb.Empty, error) {
	return nil, errdefs.ErrNotImplemented
}

func (f *fakeLeases) DeleteResource(context.Context, *leasesv1.DeleteResourceRequest) (*emptypb.Empty, error) {
	return nil, errdefs.ErrNotImplemented
}

func (f *fakeLeases) ListResources(context.Context, *leasesv1.ListResourcesRequest) (*leasesv1.ListResourcesResponse, error) {
	return nil, errdefs.ErrNotImplemented
}

// fakeSnapshots prepares snapshots on any parent; their mounts name the
// snapshotter, key and parent.
type fakeSnapshots struct {
	mu      sync.Mutex
	mounts  map[string][]*typesv1.Mount // by snapshotter/key; guarded by mu
	removed []string                    // snapshotter/key of Remove calls; guarded by mu
	refuse  error                       // of every Prepare and View when set; guarded by mu
}

// create makes a snapshot as Prepare or View does: AlreadyExists for a
// key taken, refuse when set.
func (f *fakeSnapshots) create(snapshotter, key, parent string, ro bool) ([]*typesv1.Mount, error) {
	f.mu.Lock()
	_, taken := f.mounts[snapshotter+"/"+key]
	refuse := f.refuse
	f.mu.Unlock()
	switch {
	case refuse != nil:
		return nil, refuse
	case taken:
		return nil, fmt.Errorf("snapshot %q: %w", key, errdefs.ErrAlreadyExists)
	}
	return f.make(snapshotter, key, parent, ro), nil
}

func (f *fakeSnapshots) make(snapshotter, key, parent string, ro bool) []*typesv1.Mount {
	opts := []string{"lowerdir=/" + snapshotter + "/" + parent, "upperdir=/" + snapshotter + "/" + key}
	if ro {
		opts = []string{"ro"}
	}
	ms := []*typesv1.Mount{{Type: "overlay", Source: "overlay", Options: opts}}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mounts[snapshotter+"/"+key] = ms
	return ms
}

func (f *fakeSnapshots) Prepare(ctx context.Context, r *snapshotsv1.PrepareSnapshotRequest) (*snapshotsv1.PrepareSnapshotResponse, error) {
	ms, err := f.create(r.Snapshotter, r.Key, r.Parent, false)
	if err != nil {
		return nil, err
	}
	return &snapshotsv1.PrepareSnapshotResponse{Mounts: ms}, nil
}

func (f *fakeSnapshots) View(ctx context.Context, r *snapshotsv1.ViewSnapshotRequest) (*snapshotsv1.ViewSnapshotResponse, error) {
	ms, err := f.create(r.Snapshotter, r.Key, r.Parent, true)
	if err != nil {
		return nil, err
	}
	return &snapshotsv1.ViewSnapshotResponse{Mounts: ms}, nil
}

func (f *fakeSnapshots) Mounts(ctx context.Context, r *snapshotsv1.MountsRequest) (*snapshotsv1.MountsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ms, ok := f.mounts[r.Snapshotter+"/"+r.Key]
	if !ok {
		return nil, fmt.Errorf("snapshot %q: %w", r.Key, errdefs.ErrNotFound)
	}
	return &snapshotsv1.MountsResponse{Mounts: ms}, nil
}

func (f *fakeSnapshots) Commit(context.Context, *snapshotsv1.CommitSnapshotRequest) (*emptypb.Empty, error) {
	return nil, errdefs.ErrNotImplemented
}

func (f *fakeSnapshots) Remove(_ context.Context, r *snapshotsv1.RemoveSnapshotRequest) (*emptypb.Empty, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, r.Snapshotter+"/"+r.Key)
	delete(f.mounts, r.Snapshotter+"/"+r.Key)
	return &emptypb.Empty{}, nil
}

func (f *fakeSnapshots) Stat(context.Context, *snapshotsv1.StatSnapshotRequest) (*snapshotsv1.StatSnapshotResponse, error) {
	return nil, errdefs.ErrNotImplemented
}

func (f *fakeSnapshots) Update(context.Context, *snapshotsv1.UpdateSnapshotRequest) (*snapshotsv1.UpdateSnapshotResponse, error) {
	return nil, errdefs.ErrNotImplemented
}

func (f *fakeSnapshots) List(context.Context, *snapshotsv1.ListSnapshotsRequest, snapshotsv1.Snapshots_ListServer) error {
	return errdefs.ErrNotImplemented
}

func (f *fakeSnapshots) Usage(context.Context, *snapshotsv1.UsageRequest) (*snapshotsv1.UsageResponse, error) {
	return nil, errdefs.ErrNotImplemented
}
