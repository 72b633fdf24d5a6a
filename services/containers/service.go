// Package containers serves berth.services.containers.v1 over the metadata
// store.
package containers

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"

	"github.com/berthrt/berth/containers"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/events/topics"
	"github.com/berthrt/berth/internal/apiconv"
	"github.com/berthrt/berth/mount"
	nsctx "github.com/berthrt/berth/namespaces"
	api "github.com/berthrt/berth/proto/containers/v1"
	eventsv1 "github.com/berthrt/berth/proto/events/v1"
	"github.com/berthrt/berth/services"
	"github.com/berthrt/berth/snapshots"
)

// Tasks tells whether a container has a task; a container with one cannot
// be deleted.
type Tasks interface {
	HasTask(ctx context.Context, namespace, id string) bool
}

// Config is what the service uses.
type Config struct {
	Store          containers.Store
	Tasks          Tasks
	Publisher      services.Publisher
	DefaultRuntime string
	// Locks is shared with the tasks service, whose Create takes the
	// same lock.
	Locks *services.IDLocks
	// Snapshotter returns the snapshotter name as the snapshots API
	// serves it (services/snapshots' Config.Snapshotter): a delete with
	// remove_snapshot removes a snapshot only of one that it returns, and
	// a create with a snapshot makes it in one that it returns.
	Snapshotter func(name string) (snapshots.Snapshotter, error)
}

type service struct{ Config }

// Register serves the containers API on srv.
func Register(srv *ttrpc.Server, cfg Config) {
	api.RegisterContainersService(srv, &service{cfg})
}

func (s *service) Get(ctx context.Context, req *api.GetContainerRequest) (*api.GetContainerResponse, error) {
	c, err := s.Store.Get(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	return &api.GetContainerResponse{Container: apiconv.ContainerToProto(c)}, nil
}

func (s *service) List(ctx context.Context, req *api.ListContainersRequest) (*api.ListContainersResponse, error) {
	cs, err := s.list(ctx, req)
	if err != nil {
		return nil, err
	}
	resp := &api.ListContainersResponse{Containers: cs}
	if err := services.CheckListReply("containers", resp); err != nil {
		return nil, err
	}
	return resp, nil
}

func (s *service) ListStream(ctx context.Context, req *api.ListContainersRequest, stream api.Containers_ListStreamServer) (err error) {
	defer errdefs.StreamCall(ctx, "/berth.services.containers.v1.Containers/ListStream").Done(&err)
	ctx, err = services.StreamNamespace(ctx, req.GetNamespace())
	if err != nil {
		return errdefs.ToTTRPC(err)
	}
	cs, err := s.list(ctx, req)
	if err != nil {
		return errdefs.ToTTRPC(err)
	}
	return services.SendAll(cs, func(batch []*api.Container) error {
		return stream.Send(&api.ListContainersResponse{Containers: batch})
	})
}

func (s *service) list(ctx context.Context, req *api.ListContainersRequest) ([]*api.Container, error) {
	cs, err := s.Store.List(ctx, req.GetFilters()...)
	if err != nil {
		return nil, err
	}
	out := make([]*api.Container, 0, len(cs))
	for _, c := range cs {
		out = append(out, apiconv.ContainerToProto(c))
	}
	return out, nil
}

func (s *service) Create(ctx context.Context, req *api.CreateContainerRequest) (*api.CreateContainerResponse, error) {
	if req.GetContainer() == nil {
		return nil, fmt.Errorf("container is required: %w", errdefs.ErrInvalidArgument)
	}
	c := apiconv.ContainerFromProto(req.GetContainer())
	if c.Runtime.Options != nil {
		// Stored but never applied would be worse than refused.
		return nil, fmt.Errorf("container %q: runtime options (%s) are not supported yet: %w", c.ID, c.Runtime.Options.GetTypeUrl(), errdefs.ErrNotImplemented)
	}
	if c.Runtime.Name == "" {
		c.Runtime.Name = s.DefaultRuntime
	}
	var (
		created containers.Container
		mounts  []mount.Mount
		err     error
	)
	if snap := req.GetSnapshot(); snap != nil {
		created, mounts, err = s.Store.CreateWithSnapshot(ctx, c, containers.NewSnapshot{Parent: snap.GetParent(), View: snap.GetView(), Labels: snap.GetLabels()}, s.snapshotter)
	} else {
		created, err = s.Store.Create(ctx, c)
	}
	if err != nil {
		return nil, err
	}
	s.publish(ctx, topics.ContainerCreate, &eventsv1.ContainerCreate{Id: created.ID, Image: created.Image, Runtime: created.Runtime.Name})
	return &api.CreateContainerResponse{
		Container:       apiconv.ContainerToProto(created),
		Mounts:          apiconv.MountsToProto(mounts),
		SnapshotCreated: req.GetSnapshot() != nil,
	}, nil
}

// snapshotter returns the snapshotter name as the snapshots API serves
// it, for a create that makes the container's snapshot: NotFound for one
// the daemon does not have, Unavailable for one that did not open, as
// Snapshots.Prepare answers.
func (s *service) snapshotter(name string) (snapshots.Snapshotter, error) {
	if s.Snapshotter == nil {
		return nil, fmt.Errorf("this daemon makes no snapshots with their containers: %w", errdefs.ErrNotImplemented)
	}
	return s.Snapshotter(name)
}

func (s *service) Update(ctx context.Context, req *api.UpdateContainerRequest) (*api.UpdateContainerResponse, error) {
	if req.GetContainer() == nil {
		return nil, fmt.Errorf("container is required: %w", errdefs.ErrInvalidArgument)
	}
	updated, err := s.Store.Update(ctx, apiconv.ContainerFromProto(req.GetContainer()), req.GetUpdateMask().GetPaths()...)
	if err != nil {
		return nil, err
	}
	s.publish(ctx, topics.ContainerUpdate, &eventsv1.ContainerUpdate{Id: updated.ID, Image: updated.Image, Labels: updated.Labels})
	return &api.UpdateContainerResponse{Container: apiconv.ContainerToProto(updated)}, nil
}

func (s *service) Delete(ctx context.Context, req *api.DeleteContainerRequest) (*api.DeleteContainerResponse, error) {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	unlock, err := s.Locks.Lock(ctx, ns, req.GetId())
	if err != nil {
		return nil, err
	}
	defer unlock()
	if s.Tasks.HasTask(ctx, ns, req.GetId()) {
		return nil, fmt.Errorf("container %q has a task: delete the task first: %w", req.GetId(), errdefs.ErrFailedPrecondition)
	}
	if req.GetRemoveSnapshot() {
		err = s.Store.DeleteWithSnapshot(ctx, req.GetId(), s.usable)
	} else {
		err = s.Store.Delete(ctx, req.GetId())
	}
	if err != nil {
		return nil, err
	}
	s.publish(ctx, topics.ContainerDelete, &eventsv1.ContainerDelete{Id: req.GetId()})
	return &api.DeleteContainerResponse{SnapshotRemoved: req.GetRemoveSnapshot()}, nil
}

// usable says whether a container's snapshot of snapshotter name may be
// removed: as Snapshots.Remove would find it, except that a snapshotter
// the daemon does not have is FailedPrecondition, since a NotFound from
// Delete says that the container is absent.
func (s *service) usable(name string) error {
	if s.Snapshotter == nil {
		return fmt.Errorf("this daemon removes no snapshots with their containers: %w", errdefs.ErrNotImplemented)
	}
	_, err := s.Snapshotter(name)
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("%v: %w", err, errdefs.ErrFailedPrecondition)
	}
	return err
}

func (s *service) publish(ctx context.Context, topic string, ev proto.Message) {
	if err := s.Publisher.Publish(ctx, topic, ev); err != nil {
		slog.WarnContext(ctx, "publish container event", "topic", topic, "error", err)
	}
}
