package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/apiconv"
	"github.com/berthrt/berth/io/cio"
	tasksv1 "github.com/berthrt/berth/proto/tasks/v1"
	"github.com/berthrt/berth/shimapi"
)

// Task is the running instance of a container: its init process, plus what
// concerns the whole container.
type Task interface {
	Process
	// Pause freezes every process of the task.
	Pause(ctx context.Context) error
	// Resume thaws a paused task.
	Resume(ctx context.Context) error
	// Exec registers an additional process; Start on it runs it.
	Exec(ctx context.Context, execID string, spec *specs.Process, creator cio.Creator) (Process, error)
	// LoadProcess returns an existing exec process; with attach not nil,
	// it reconnects to the process's FIFOs.
	LoadProcess(ctx context.Context, execID string, attach cio.Attach) (Process, error)
	// Pids lists the processes in the task's container.
	Pids(ctx context.Context) ([]ProcessInfo, error)
	// Update changes the task's resource limits.
	Update(ctx context.Context, opts ...UpdateTaskOpts) error
	// Metrics returns the cgroup metrics of the task's container.
	Metrics(ctx context.Context) (*Metrics, error)
}

// ProcessInfo is one process in a task's container.
type ProcessInfo struct {
	Pid uint32
	// ExecID is set when the pid is the main process of an exec.
	ExecID string
}

// Metrics are the cgroup metrics of a task's container at a time.
type Metrics struct {
	ContainerID string
	Timestamp   time.Time
	Data        *shimapi.Metrics
}

type task struct {
	*process
}

func newTask(c *Client, id string, pid uint32, pio cio.IO) *task {
	return &task{process: newProcess(c, id, "", pid, pio)}
}

// Delete gives the options the Task, so that WithProcessKill kills every
// process of the container.
func (t *task) Delete(ctx context.Context, opts ...ProcessDeleteOpts) (*ExitStatus, error) {
	return t.delete(ctx, t, opts)
}

func (t *task) Pause(ctx context.Context) error {
	_, err := t.client.api().tasks.Pause(ctx, &tasksv1.PauseTaskRequest{ContainerId: t.containerID})
	return err
}

func (t *task) Resume(ctx context.Context) error {
	_, err := t.client.api().tasks.Resume(ctx, &tasksv1.ResumeTaskRequest{ContainerId: t.containerID})
	return err
}

func (t *task) Exec(ctx context.Context, execID string, spec *specs.Process, creator cio.Creator) (_ Process, err error) {
	if execID == "" {
		return nil, invalid("exec: empty exec id")
	}
	if spec == nil {
		return nil, invalid(fmt.Sprintf("exec %q: nil process spec", execID))
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("exec %q: encode process spec: %w: %w", execID, errdefs.ErrInvalidArgument, err)
	}
	if creator == nil {
		creator = cio.NullIO
	}
	pio, err := creator(execID)
	if err != nil {
		return nil, fmt.Errorf("exec %q: stdio: %w", execID, err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, pio.Close())
		}
	}()
	if _, err := t.client.api().tasks.Exec(ctx, &tasksv1.ExecProcessRequest{
		ContainerId: t.containerID,
		ExecId:      execID,
		Stdio:       stdioToProto(pio.Config()),
		Spec:        b,
	}); err != nil {
		return nil, err
	}
	return newProcess(t.client, t.containerID, execID, 0, pio), nil
}

func (t *task) LoadProcess(ctx context.Context, execID string, attach cio.Attach) (Process, error) {
	if execID == "" {
		return nil, invalid("load process: empty exec id")
	}
	p, err := getProcess(ctx, t.client, t.containerID, execID)
	if err != nil {
		return nil, err
	}
	pio, err := attachIO(p, attach)
	if err != nil {
		return nil, fmt.Errorf("exec %q of task %q: %w", execID, t.containerID, err)
	}
	proc := newProcess(t.client, t.containerID, execID, p.Pid, pio)
	proc.unattached = unattachedFIFOs(p, pio)
	return proc, nil
}

func (t *task) Pids(ctx context.Context) ([]ProcessInfo, error) {
	r, err := t.client.api().tasks.ListPids(ctx, &tasksv1.ListPidsRequest{ContainerId: t.containerID})
	if err != nil {
		return nil, err
	}
	out := make([]ProcessInfo, 0, len(r.Processes))
	for _, p := range r.Processes {
		out = append(out, ProcessInfo{Pid: p.Pid, ExecID: p.ExecId})
	}
	return out, nil
}

func (t *task) Update(ctx context.Context, opts ...UpdateTaskOpts) error {
	var info UpdateTaskInfo
	for _, o := range opts {
		if err := o(ctx, t.client, &info); err != nil {
			return err
		}
	}
	if info.Resources == nil {
		return invalid(fmt.Sprintf("update task %q: nothing to update", t.containerID))
	}
	b, err := json.Marshal(info.Resources)
	if err != nil {
		return fmt.Errorf("update task %q: encode resources: %w: %w", t.containerID, errdefs.ErrInvalidArgument, err)
	}
	_, err = t.client.api().tasks.Update(ctx, &tasksv1.UpdateTaskRequest{ContainerId: t.containerID, Resources: b})
	return err
}

func (t *task) Metrics(ctx context.Context) (*Metrics, error) {
	r, err := t.client.api().tasks.Metrics(ctx, &tasksv1.MetricsRequest{
		Filters: []string{"id==" + strconv.Quote(t.containerID)},
	})
	if err != nil {
		return nil, err
	}
	for _, m := range r.Metrics {
		if m.ContainerId == t.containerID {
			return &Metrics{ContainerID: m.ContainerId, Timestamp: apiconv.TimeFromProto(m.Timestamp), Data: m.Metrics}, nil
		}
	}
	return nil, fmt.Errorf("metrics of task %q: %w", t.containerID, errdefs.ErrNotFound)
}
