package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/apiconv"
	"github.com/berthrt/berth/io/cio"
	"github.com/berthrt/berth/leases"
	containersv1 "github.com/berthrt/berth/proto/containers/v1"
	tasksv1 "github.com/berthrt/berth/proto/tasks/v1"
	"github.com/berthrt/berth/shimapi"
)

// Container is a container's record in the daemon and the way to its task.
// Every method asks the daemon: nothing is cached but the id, and, in a
// Container that NewContainer returned, the mounts of the snapshot its
// options prepared, which NewTask then does not look up (a container's
// snapshot cannot change; a Container kept after its container was
// deleted and made again under the same id mounts the old snapshot).
type Container interface {
	ID() string
	// Info returns the container's record.
	Info(ctx context.Context) (ContainerInfo, error)
	// Labels returns the container's labels.
	Labels(ctx context.Context) (map[string]string, error)
	// SetLabels sets the given labels (an empty value removes one) and
	// returns all labels afterwards.
	SetLabels(ctx context.Context, labels map[string]string) (map[string]string, error)
	// Spec returns the container's OCI runtime spec.
	Spec(ctx context.Context) (*specs.Spec, error)
	// Update changes the record; see UpdateContainerOpts.
	Update(ctx context.Context, opts ...UpdateContainerOpts) error
	// Delete removes the container; ErrFailedPrecondition while it has a
	// task.
	Delete(ctx context.Context, opts ...DeleteOpts) error
	// NewTask creates the container's task with the IO creator makes; it
	// does not run user code until Task.Start (unless WithTaskStart).
	NewTask(ctx context.Context, creator cio.Creator, opts ...NewTaskOpts) (Task, error)
	// Task returns the container's existing task; with attach not nil,
	// it reconnects to the task's FIFOs. ErrNotFound without a task.
	Task(ctx context.Context, attach cio.Attach) (Task, error)
}

// NewContainer creates a container named id in the context's namespace.
// It makes a snapshot that an option asks for (WithNewSnapshot) in the
// same call, Containers.Create; see WithNewSnapshot. When it fails it
// leaves neither the container nor a snapshot it made.
func (c *Client) NewContainer(ctx context.Context, id string, opts ...NewContainerOpts) (_ Container, err error) {
	// An option that makes something the container will reference on its
	// own (a snapshot a spec option reads) does so under a lease, so that
	// a garbage collection between that and the container record cannot
	// take it; the lease is made only when such an option asks for it,
	// and goes once the record exists.
	h := &newContainerCall{client: c}
	ctx = context.WithValue(ctx, newContainerCallKey{}, h)
	defer h.release(ctx)
	defer func() {
		if err != nil {
			err = errors.Join(err, h.removeMade(ctx))
		}
	}()
	info := ContainerInfo{ID: id}
	for _, o := range opts {
		if err := o(ctx, c, &info); err != nil {
			return nil, err
		}
	}
	req := &containersv1.CreateContainerRequest{Container: apiconv.ContainerToProto(info)}
	snap := h.asked(info)
	if snap != nil {
		req.Snapshot = snap.request()
	}
	r, err := c.api().containers.Create(ctx, req)
	if err != nil {
		if snap != nil {
			err = snap.explain(id, err)
		}
		return nil, err
	}
	rootfs := h.preparedRootFS(info)
	if snap != nil {
		if rootfs, err = c.createdRootFS(ctx, id, snap, r); err != nil {
			return nil, err
		}
	}
	return &container{client: c, id: r.GetContainer().GetId(), rootfs: rootfs}, nil
}

// createdRootFS returns the mounts of the snapshot s that the Create of
// container id, which replied r, was asked to make. A daemon older than
// that field made none: the snapshot is prepared now, after the record,
// which holds it against GC already; if that fails, the record goes again.
func (c *Client) createdRootFS(ctx context.Context, id string, s *newRootFS, r *containersv1.CreateContainerResponse) ([]Mount, error) {
	if r.GetSnapshotCreated() {
		return apiconv.MountsFromProto(r.GetMounts()), nil
	}
	ms, err := s.make(ctx, c, id)
	if err != nil {
		_, derr := c.api().containers.Delete(context.WithoutCancel(ctx), &containersv1.DeleteContainerRequest{Id: id})
		if derr != nil {
			derr = fmt.Errorf("delete container %q again: %w", id, derr)
		}
		return nil, errors.Join(err, derr)
	}
	return ms, nil
}

// LoadContainer returns the existing container named id; ErrNotFound when
// there is none in the context's namespace.
func (c *Client) LoadContainer(ctx context.Context, id string) (Container, error) {
	r, err := c.api().containers.Get(ctx, &containersv1.GetContainerRequest{Id: id})
	if err != nil {
		return nil, err
	}
	return &container{client: c, id: r.GetContainer().GetId()}, nil
}

// Containers returns the containers of the context's namespace that match
// any of the filters (all without filters). Fields: id, image,
// runtime.name, snapshotter, snapshotkey, labels.<key>.
func (c *Client) Containers(ctx context.Context, filters ...string) ([]Container, error) {
	infos, err := c.ListContainerInfos(ctx, filters...)
	if err != nil {
		return nil, err
	}
	out := make([]Container, 0, len(infos))
	for _, info := range infos {
		out = append(out, &container{client: c, id: info.ID})
	}
	return out, nil
}

type container struct {
	client *Client
	id     string
	// rootfs are the mounts of the snapshot that NewContainer prepared
	// for it (nil otherwise), which NewTask then need not look up: a
	// container's snapshot cannot change (Update refuses), and a
	// snapshot's mounts do not.
	rootfs []Mount
}

func (c *container) ID() string { return c.id }

func (c *container) get(ctx context.Context) (*containersv1.Container, error) {
	r, err := c.client.api().containers.Get(ctx, &containersv1.GetContainerRequest{Id: c.id})
	if err != nil {
		return nil, err
	}
	return r.GetContainer(), nil
}

func (c *container) Info(ctx context.Context) (ContainerInfo, error) {
	r, err := c.get(ctx)
	if err != nil {
		return ContainerInfo{}, err
	}
	return apiconv.ContainerFromProto(r), nil
}

func (c *container) Labels(ctx context.Context) (map[string]string, error) {
	r, err := c.get(ctx)
	if err != nil {
		return nil, err
	}
	return nonNil(r.GetLabels()), nil
}

func (c *container) SetLabels(ctx context.Context, labels map[string]string) (map[string]string, error) {
	paths := make([]string, 0, len(labels))
	set := map[string]string{}
	for k, v := range labels {
		paths = append(paths, "labels."+k)
		if v != "" {
			set[k] = v
		}
	}
	r, err := c.client.api().containers.Update(ctx, &containersv1.UpdateContainerRequest{
		Container:  &containersv1.Container{Id: c.id, Labels: set},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: paths},
	})
	if err != nil {
		return nil, err
	}
	return nonNil(r.GetContainer().GetLabels()), nil
}

func (c *container) Spec(ctx context.Context) (*specs.Spec, error) {
	r, err := c.get(ctx)
	if err != nil {
		return nil, err
	}
	var s specs.Spec
	if err := json.Unmarshal(r.GetSpec(), &s); err != nil {
		return nil, fmt.Errorf("container %q: decode spec: %w: %w", c.id, errdefs.ErrInternal, err)
	}
	return &s, nil
}

func (c *container) Update(ctx context.Context, opts ...UpdateContainerOpts) error {
	r, err := c.get(ctx)
	if err != nil {
		return err
	}
	info := apiconv.ContainerFromProto(r)
	for _, o := range opts {
		if err := o(ctx, c.client, &info); err != nil {
			return err
		}
	}
	// An empty mask updates every field that may change; the ones that
	// may not are sent as they were read.
	_, err = c.client.api().containers.Update(ctx, &containersv1.UpdateContainerRequest{Container: apiconv.ContainerToProto(info)})
	return err
}

func (c *container) Delete(ctx context.Context, opts ...DeleteOpts) error {
	if len(opts) > 0 {
		info, err := c.Info(ctx)
		if err != nil {
			return err
		}
		deleted := false
		octx := context.WithValue(ctx, recordDeletedKey{}, &deleted)
		for _, o := range opts {
			if err := o(octx, c.client, info); err != nil {
				return err
			}
		}
		if deleted {
			return nil
		}
	}
	_, err := c.client.api().containers.Delete(ctx, &containersv1.DeleteContainerRequest{Id: c.id})
	if len(opts) > 0 && errdefs.IsNotFound(err) {
		// Info found it above: an option deleted the record already.
		return nil
	}
	return err
}

// recordDeletedKey is the context key under which Delete hands its options
// a *bool that an option sets once it deleted the container's record
// itself (WithSnapshotCleanup deletes it with its snapshot in one call).
type recordDeletedKey struct{}

func (c *container) NewTask(ctx context.Context, creator cio.Creator, opts ...NewTaskOpts) (_ Task, err error) {
	var info TaskInfo
	for _, o := range opts {
		if err := o(ctx, c.client, &info); err != nil {
			return nil, err
		}
	}
	switch {
	case info.SpecRootFS && len(info.RootFS) > 0:
		return nil, invalid(fmt.Sprintf("task %q: WithSpecRootFS with rootfs mounts", c.id))
	case len(info.RootFS) == 0 && !info.SpecRootFS && c.rootfs != nil:
		info.RootFS = c.rootfs
	case len(info.RootFS) == 0 && !info.SpecRootFS:
		if info.RootFS, err = c.snapshotRootFS(ctx); err != nil {
			return nil, err
		}
	}
	if creator == nil {
		creator = cio.NullIO
	}
	pio, err := creator(c.id)
	if err != nil {
		return nil, fmt.Errorf("task %q: stdio: %w", c.id, err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, pio.Close())
		}
	}()
	r, err := c.client.api().tasks.Create(ctx, &tasksv1.CreateTaskRequest{
		ContainerId: c.id,
		Rootfs:      apiconv.MountsToProto(info.RootFS),
		Stdio:       stdioToProto(pio.Config()),
		Start:       info.Start,

		CleanupOnExit: info.CleanupOnExit,
	})
	if err != nil {
		return nil, err
	}
	t := newTask(c.client, c.id, r.Pid, pio)
	if info.Start {
		t.closeStdinAtEOF(ctx) // what Start arranges otherwise
	}
	return t, nil
}

func (c *container) Task(ctx context.Context, attach cio.Attach) (Task, error) {
	p, err := getProcess(ctx, c.client, c.id, "")
	if err != nil {
		return nil, err
	}
	pio, err := attachIO(p, attach)
	if err != nil {
		return nil, fmt.Errorf("task %q: %w", c.id, err)
	}
	t := newTask(c.client, c.id, p.Pid, pio)
	t.unattached = unattachedFIFOs(p, pio)
	return t, nil
}

// getProcess returns the daemon's report of one process of a task.
func getProcess(ctx context.Context, c *Client, id, execID string) (*tasksv1.Process, error) {
	r, err := c.api().tasks.Get(ctx, &tasksv1.GetRequest{ContainerId: id, ExecId: execID})
	if err != nil {
		return nil, err
	}
	if r.Process == nil {
		return nil, fmt.Errorf("task %q exec %q: empty reply: %w", id, execID, errdefs.ErrInternal)
	}
	return r.Process, nil
}

// attachIO reconnects to the FIFOs of p with attach; nil when attach is nil
// or the daemon does not know p's stdio.
func attachIO(p *tasksv1.Process, attach cio.Attach) (cio.IO, error) {
	if attach == nil || p.Status == shimapi.Status_STATUS_UNKNOWN {
		return nil, nil
	}
	return attach(cio.LoadFIFOs(stdioFromProto(p.Stdio)))
}

// unattachedFIFOs returns the FIFOs of p for Delete to remove when p was
// loaded without attaching to them; nil otherwise.
func unattachedFIFOs(p *tasksv1.Process, pio cio.IO) *cio.FIFOSet {
	if pio != nil || p.Status == shimapi.Status_STATUS_UNKNOWN || p.Stdio == nil {
		return nil
	}
	return cio.LoadFIFOs(stdioFromProto(p.Stdio))
}

func stdioToProto(c cio.Config) *shimapi.Stdio {
	return &shimapi.Stdio{Stdin: c.Stdin, Stdout: c.Stdout, Stderr: c.Stderr, Terminal: c.Terminal}
}

func stdioFromProto(s *shimapi.Stdio) cio.Config {
	return cio.Config{Stdin: s.GetStdin(), Stdout: s.GetStdout(), Stderr: s.GetStderr(), Terminal: s.GetTerminal()}
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// newContainerCall is what the options of one NewContainer share: the
// snapshot an option asked for, and the lease and mounts of one that was
// made on its own before the container.
type newContainerCall struct {
	client *Client

	mu sync.Mutex // guards the fields below
	// snap is the snapshot an option asked for (WithNewSnapshot), which
	// Create makes with the container; nil when none, or once it was
	// made on its own (rootFSNow).
	snap  *newRootFS
	made  *newRootFS // the snapshot made on its own, nil when none
	lease string     // "" until made
	done  func(context.Context) error
	// key and snapper name the snapshot whose mounts are known (see
	// preparedRootFS); mounts are its mounts, as Prepare or View
	// returned them.
	key, snapper string
	mounts       []Mount
}

type newContainerCallKey struct{}

// ask records s as the snapshot to make with the container.
func (h *newContainerCall) ask(s *newRootFS) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.snap, h.made = s, nil
	h.snapper, h.key, h.mounts = s.snapshotter, s.key, nil
}

// asked returns the snapshot that Create is to make with the container
// info: the one an option asked for, unless it was made already or a
// later option named another snapshot.
func (h *newContainerCall) asked(info ContainerInfo) *newRootFS {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.snap == nil || h.snap.key != info.SnapshotKey || h.snap.snapshotter != info.Snapshotter {
		return nil
	}
	return h.snap
}

// rootFSNow returns the mounts of the container's snapshot info names
// before the container exists, for a spec option that reads its files.
// If an option asked for it (WithNewSnapshot), it is made now, under the
// caller's lease or else the call's own, which holds it until the
// container's record does; NewContainer then does not ask Create to make
// it. Otherwise it asks the daemon for the mounts of an existing one.
func rootFSNow(ctx context.Context, c *Client, info *ContainerInfo) ([]Mount, error) {
	h, ok := ctx.Value(newContainerCallKey{}).(*newContainerCall)
	var s *newRootFS
	if ok {
		s = h.asked(*info)
	}
	if s == nil {
		ms, err := c.SnapshotService(info.Snapshotter).Mounts(ctx, info.SnapshotKey)
		if err != nil {
			return nil, fmt.Errorf("container %q: mounts of snapshot %q: %w", info.ID, info.SnapshotKey, err)
		}
		return ms, nil
	}
	lctx, err := h.leased(ctx)
	if err != nil {
		return nil, fmt.Errorf("container %q: %w", info.ID, err)
	}
	ms, err := s.make(lctx, c, info.ID)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.snap, h.made, h.mounts = nil, s, ms
	return ms, nil
}

// leased returns ctx under a lease: the caller's, if ctx has one, else
// the call's own (made now with ctx if needed).
func (h *newContainerCall) leased(ctx context.Context) (context.Context, error) {
	if _, ok := leases.FromContext(ctx); ok {
		return ctx, nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lease == "" {
		lctx, done, err := h.client.WithLease(ctx, WithLeaseExpiration(newContainerLeaseExpiration))
		if err != nil {
			return nil, err
		}
		h.lease, _ = leases.FromContext(lctx)
		h.done = done
	}
	return leases.WithLease(ctx, h.lease), nil
}

// newContainerLeaseExpiration bounds the life of a NewContainer's lease
// should the client die before it deletes it.
const newContainerLeaseExpiration = time.Hour

func (h *newContainerCall) release(ctx context.Context) {
	h.mu.Lock()
	done := h.done
	h.mu.Unlock()
	if done != nil {
		done(context.WithoutCancel(ctx))
	}
}

// removeMade removes the snapshot that was made on its own for a
// container that then was not created: no task can have mounted it, and
// it did not exist before this call (its Prepare would have failed).
func (h *newContainerCall) removeMade(ctx context.Context) error {
	h.mu.Lock()
	s := h.made
	h.mu.Unlock()
	if s == nil {
		return nil
	}
	if err := h.client.SnapshotService(s.snapshotter).Remove(context.WithoutCancel(ctx), s.key); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("remove snapshot %q: %w", s.key, err)
	}
	return nil
}

// preparedRootFS returns the mounts of the container's snapshot when they
// are known from this call (nil otherwise, or when a later option named
// another snapshot).
func (h *newContainerCall) preparedRootFS(info ContainerInfo) []Mount {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.key == "" || h.key != info.SnapshotKey || h.snapper != info.Snapshotter {
		return nil
	}
	return h.mounts
}
