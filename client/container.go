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
func (c *Client) NewContainer(ctx context.Context, id string, opts ...NewContainerOpts) (Container, error) {
	// An option that makes something the container will reference (a
	// snapshot) does so under a lease, so that a garbage collection between
	// that and the container record cannot take it; the lease is made only
	// when such an option asks for it, and goes once the record exists.
	h := &newContainerCall{client: c}
	ctx = context.WithValue(ctx, newContainerCallKey{}, h)
	defer h.release(ctx)
	info := ContainerInfo{ID: id}
	for _, o := range opts {
		if err := o(ctx, c, &info); err != nil {
			return nil, err
		}
	}
	r, err := c.api().containers.Create(ctx, &containersv1.CreateContainerRequest{Container: apiconv.ContainerToProto(info)})
	if err != nil {
		return nil, err
	}
	return &container{client: c, id: r.GetContainer().GetId(), rootfs: h.preparedRootFS(info)}, nil
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
// lease, made on first use, and the mounts of the snapshot an option
// prepared. Options may use it from goroutines of their own.
type newContainerCall struct {
	client *Client

	mu      sync.Mutex // guards the fields below
	lease   string     // "" until made
	done    func(context.Context) error
	key     string  // the snapshot prepared, in snapshotter
	snapper string  // (see preparedRootFS)
	mounts  []Mount // its mounts, as Prepare or View returned them
}

type newContainerCallKey struct{}

// leased returns ctx under a lease: the caller's, if ctx has one, else the
// one of the NewContainer call in progress (made now with ctx if needed).
// Outside NewContainer it returns ctx as it is.
func leased(ctx context.Context) (context.Context, error) {
	if _, ok := leases.FromContext(ctx); ok {
		return ctx, nil
	}
	h, ok := ctx.Value(newContainerCallKey{}).(*newContainerCall)
	if !ok {
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

// prepared records the mounts of the snapshot key that an option of the
// NewContainer call in ctx prepared in snapshotter; outside NewContainer
// it does nothing.
func prepared(ctx context.Context, snapshotter, key string, mounts []Mount) {
	h, ok := ctx.Value(newContainerCallKey{}).(*newContainerCall)
	if !ok {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.snapper, h.key, h.mounts = snapshotter, key, mounts
}

// preparedRootFS returns the mounts of the container's snapshot when an
// option prepared it in this call (nil otherwise, or when a later option
// named another snapshot).
func (h *newContainerCall) preparedRootFS(info ContainerInfo) []Mount {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.key == "" || h.key != info.SnapshotKey || h.snapper != info.Snapshotter {
		return nil
	}
	return h.mounts
}
