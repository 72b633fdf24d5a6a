// Package snapshots serves berth.services.snapshots.v1 over snapshotters
// by name. In berthd they are the namespaced views (package metadata) of
// overlayfs, native and every proxy plugin; in an external snapshotter
// program (cmd/native-snapshotter) one plain snapshotter under any name.
package snapshots

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/apiconv"
	api "github.com/berthrt/berth/proto/snapshots/v1"
	"github.com/berthrt/berth/services"
	"github.com/berthrt/berth/snapshots"
)

// Config names the snapshotters to serve.
type Config struct {
	// Snapshotters by name.
	Snapshotters map[string]snapshots.Snapshotter
	// Failed are the snapshotters that did not open, with why: a call
	// naming one is ErrUnavailable with that reason.
	Failed map[string]error
	// Default serves requests that name no snapshotter.
	Default string
	// Any, when set, serves every name (an external snapshotter program,
	// whose one snapshotter berthd calls by the name of its proxy
	// plugin); Snapshotters and Failed are then unused.
	Any snapshots.Snapshotter
}

type service struct {
	cfg Config
}

// Register serves the snapshots API on srv. Errors of the unary calls are
// converted by the server's interceptor; List converts its own.
func Register(srv *ttrpc.Server, cfg Config) {
	api.RegisterSnapshotsService(srv, &service{cfg: cfg})
}

// snapshotter returns the snapshotter a request names.
func (s *service) snapshotter(name string) (snapshots.Snapshotter, error) {
	return s.cfg.Snapshotter(name)
}

// Snapshotter returns the snapshotter name ("" for Default) as the API
// serves it: ErrUnavailable for one that did not open, ErrNotFound for
// one c does not have. The daemon's pulls unpack through it too.
func (c Config) Snapshotter(name string) (snapshots.Snapshotter, error) {
	if c.Any != nil {
		return c.Any, nil
	}
	if name == "" {
		name = c.Default
	}
	if sn, ok := c.Snapshotters[name]; ok {
		return sn, nil
	}
	if err, ok := c.Failed[name]; ok {
		return nil, fmt.Errorf("snapshotter %q did not open: %w: %w", name, errdefs.ErrUnavailable, err)
	}
	known := slices.Sorted(maps.Keys(c.Snapshotters))
	return nil, fmt.Errorf("snapshotter %q (known: %s): %w", name, strings.Join(known, ", "), errdefs.ErrNotFound)
}

func (s *service) Prepare(ctx context.Context, req *api.PrepareSnapshotRequest) (*api.PrepareSnapshotResponse, error) {
	sn, err := s.snapshotter(req.GetSnapshotter())
	if err != nil {
		return nil, err
	}
	mounts, err := sn.Prepare(ctx, req.GetKey(), req.GetParent(), snapshots.WithLabels(req.GetLabels()))
	if err != nil {
		return nil, err
	}
	return &api.PrepareSnapshotResponse{Mounts: apiconv.MountsToProto(mounts)}, nil
}

func (s *service) View(ctx context.Context, req *api.ViewSnapshotRequest) (*api.ViewSnapshotResponse, error) {
	sn, err := s.snapshotter(req.GetSnapshotter())
	if err != nil {
		return nil, err
	}
	mounts, err := sn.View(ctx, req.GetKey(), req.GetParent(), snapshots.WithLabels(req.GetLabels()))
	if err != nil {
		return nil, err
	}
	return &api.ViewSnapshotResponse{Mounts: apiconv.MountsToProto(mounts)}, nil
}

func (s *service) Mounts(ctx context.Context, req *api.MountsRequest) (*api.MountsResponse, error) {
	sn, err := s.snapshotter(req.GetSnapshotter())
	if err != nil {
		return nil, err
	}
	mounts, err := sn.Mounts(ctx, req.GetKey())
	if err != nil {
		return nil, err
	}
	return &api.MountsResponse{Mounts: apiconv.MountsToProto(mounts)}, nil
}

func (s *service) Commit(ctx context.Context, req *api.CommitSnapshotRequest) (*emptypb.Empty, error) {
	sn, err := s.snapshotter(req.GetSnapshotter())
	if err != nil {
		return nil, err
	}
	if err := sn.Commit(ctx, req.GetName(), req.GetKey(), snapshots.WithLabels(req.GetLabels())); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

func (s *service) Remove(ctx context.Context, req *api.RemoveSnapshotRequest) (*emptypb.Empty, error) {
	sn, err := s.snapshotter(req.GetSnapshotter())
	if err != nil {
		return nil, err
	}
	if err := sn.Remove(ctx, req.GetKey()); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

func (s *service) Stat(ctx context.Context, req *api.StatSnapshotRequest) (*api.StatSnapshotResponse, error) {
	sn, err := s.snapshotter(req.GetSnapshotter())
	if err != nil {
		return nil, err
	}
	info, err := sn.Stat(ctx, req.GetKey())
	if err != nil {
		return nil, err
	}
	return &api.StatSnapshotResponse{Info: apiconv.SnapshotInfoToProto(info)}, nil
}

func (s *service) Update(ctx context.Context, req *api.UpdateSnapshotRequest) (*api.UpdateSnapshotResponse, error) {
	sn, err := s.snapshotter(req.GetSnapshotter())
	if err != nil {
		return nil, err
	}
	if req.GetInfo() == nil {
		return nil, fmt.Errorf("info is required: %w", errdefs.ErrInvalidArgument)
	}
	info, err := sn.Update(ctx, apiconv.SnapshotInfoFromProto(req.GetInfo()), req.GetUpdateMask().GetPaths()...)
	if err != nil {
		return nil, err
	}
	return &api.UpdateSnapshotResponse{Info: apiconv.SnapshotInfoToProto(info)}, nil
}

func (s *service) Usage(ctx context.Context, req *api.UsageRequest) (*api.UsageResponse, error) {
	sn, err := s.snapshotter(req.GetSnapshotter())
	if err != nil {
		return nil, err
	}
	u, err := sn.Usage(ctx, req.GetKey())
	if err != nil {
		return nil, err
	}
	return &api.UsageResponse{Size: u.Size, Inodes: u.Inodes}, nil
}

func (s *service) List(ctx context.Context, req *api.ListSnapshotsRequest, stream api.Snapshots_ListServer) (err error) {
	defer errdefs.StreamCall(ctx, "/berth.services.snapshots.v1.Snapshots/List").Done(&err)
	return errdefs.ToTTRPC(s.list(ctx, req, stream))
}

func (s *service) list(ctx context.Context, req *api.ListSnapshotsRequest, stream api.Snapshots_ListServer) error {
	sn, err := s.snapshotter(req.GetSnapshotter())
	if err != nil {
		return err
	}
	if ctx, err = services.StreamNamespace(ctx, req.GetNamespace()); err != nil {
		return err
	}
	batch := services.NewBatcher(func(infos []*api.Info) error {
		return stream.Send(&api.ListSnapshotsResponse{Info: infos})
	})
	err = sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		return batch.Add(apiconv.SnapshotInfoToProto(info))
	}, req.GetFilters()...)
	if err != nil {
		return err
	}
	return batch.Flush()
}
