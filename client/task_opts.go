package client

import (
	"context"
	"fmt"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/mount"
)

// Mount is one mount that builds a task's root filesystem: Type ("overlay",
// "bind", "tmpfs", …), Source (a device or folder), Target (a path inside
// the rootfs; empty means the rootfs itself) and fstab-style Options.
type Mount = mount.Mount

// TaskInfo is what NewTask sends besides the stdio.
type TaskInfo struct {
	// RootFS are the mounts, in order, that build the root filesystem;
	// empty when the spec names a ready root folder.
	RootFS []Mount
	// Start runs the task's init process at once (see WithTaskStart).
	Start bool
	// CleanupOnExit releases the container as soon as the init process
	// exits (see WithTaskCleanupOnExit).
	CleanupOnExit bool
	// SpecRootFS says the spec names a ready root folder (see
	// WithSpecRootFS).
	SpecRootFS bool
}

// WithSpecRootFS says the container's spec names a ready root folder
// (oci.WithRootFSPath) and it has no snapshot: NewTask mounts nothing and
// does not look the container's snapshot up, one round trip less. With
// mounts from WithRootFS it is refused.
func WithSpecRootFS(_ context.Context, _ *Client, info *TaskInfo) error {
	info.SpecRootFS = true
	return nil
}

// NewTaskOpts sets up a task before it is created.
type NewTaskOpts func(ctx context.Context, c *Client, info *TaskInfo) error

// WithRootFS builds the task's root filesystem from mounts, in order.
func WithRootFS(mounts ...Mount) NewTaskOpts {
	return func(_ context.Context, _ *Client, info *TaskInfo) error {
		info.RootFS = append(info.RootFS, mounts...)
		return nil
	}
}

// WithTaskStart has NewTask run the task's init process as well: the
// runtime creates and starts it in one call (`runc run --detach`), which
// costs one runtime process and one round trip less than NewTask and
// Start. The task is running when NewTask returns, and may have exited
// already: its exit is kept until Delete, so a Wait after NewTask still
// receives it, and Start fails.
func WithTaskStart(_ context.Context, _ *Client, info *TaskInfo) error {
	info.Start = true
	return nil
}

// WithTaskCleanupOnExit is for a task that is deleted once it exited
// (run --rm): as soon as the init process's exit is recorded, the shim
// deletes the runtime's container and unmounts the root filesystem in the
// background, while the exit travels to Wait, so that Delete finds that
// work done. Delete still reports the exit status. After the exit the task
// has no processes (Pids reports none) and no metrics (NotFound); Kill,
// Exec and the rest fail as on any stopped task.
func WithTaskCleanupOnExit(_ context.Context, _ *Client, info *TaskInfo) error {
	info.CleanupOnExit = true
	return nil
}

// KillInfo is what Kill sends besides the signal.
type KillInfo struct {
	// All signals every process of the container (a task's init only).
	All bool
	// ExecID names the process to signal; empty means the init process.
	ExecID string
}

// KillOpts changes what Kill sends.
type KillOpts func(ctx context.Context, info *KillInfo) error

// WithKillAll signals every process of the container.
func WithKillAll(_ context.Context, info *KillInfo) error {
	info.All = true
	return nil
}

// WithKillExecID signals the exec process execID instead of the init.
func WithKillExecID(execID string) KillOpts {
	return func(_ context.Context, info *KillInfo) error {
		info.ExecID = execID
		return nil
	}
}

// ProcessDeleteOpts runs before a process is deleted.
type ProcessDeleteOpts func(ctx context.Context, p Process) error

// WithProcessKill kills a running or paused process (for a task, every
// process of its container) with SIGKILL and waits until it has exited, so
// that Delete can remove it.
func WithProcessKill(ctx context.Context, p Process) error {
	st, err := p.Status(ctx)
	if err != nil {
		return err
	}
	if st.Status != Running && st.Status != Paused {
		return nil // created or stopped: Delete removes it as it is
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	exitc, err := p.Wait(ctx)
	if err != nil {
		return err
	}
	var opts []KillOpts
	if _, ok := p.(Task); ok {
		opts = append(opts, WithKillAll)
	}
	// It may have exited meanwhile: then Kill fails and the wait ends.
	if err := p.Kill(ctx, syscall.SIGKILL, opts...); err != nil &&
		!errdefs.IsNotFound(err) && !errdefs.IsFailedPrecondition(err) {
		return err
	}
	select {
	case s := <-exitc:
		return s.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// IOCloseInfo names the streams CloseIO closes.
type IOCloseInfo struct {
	Stdin bool
}

// IOCloserOpts chooses the streams CloseIO closes.
type IOCloserOpts func(*IOCloseInfo)

// WithStdinCloser closes the process's stdin, so that it reads EOF after
// what its FIFO holds.
func WithStdinCloser(info *IOCloseInfo) {
	info.Stdin = true
}

// UpdateTaskInfo is what Task.Update changes.
type UpdateTaskInfo struct {
	Resources *specs.LinuxResources
}

// UpdateTaskOpts sets what Task.Update changes.
type UpdateTaskOpts func(ctx context.Context, c *Client, info *UpdateTaskInfo) error

// WithResources sets the task's resource limits to r.
func WithResources(r *specs.LinuxResources) UpdateTaskOpts {
	return func(_ context.Context, _ *Client, info *UpdateTaskInfo) error {
		if r == nil {
			return fmt.Errorf("nil resources: %w", errdefs.ErrInvalidArgument)
		}
		info.Resources = r
		return nil
	}
}
