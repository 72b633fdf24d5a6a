package task

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	runc "github.com/containerd/go-runc"

	"github.com/berthrt/berth/internal/spantrace"
	"github.com/berthrt/berth/mount"
)

// Releasing the container: deleting the runtime's container (`runc
// delete`) and unmounting the rootfs once the init process has exited.
// Delete does it, or, for a task created with cleanup_on_exit, the shim
// does it as soon as the exit is recorded and published, while the exit
// travels to the client (releaseOnExit); Delete then finds it done. Either
// way one caller at a time owns it: release is its state machine.

// releaseState is where the release of the container stands.
type releaseState int

const (
	releasePending releaseState = iota // the runtime's container and the rootfs may exist
	releaseRunning                     // one caller is releasing them; the others wait
	releaseDone                        // both are gone
)

// release makes the container's release run once at a time and, once it
// succeeded, never again. A release that fails goes back to pending, so
// that the next caller (Delete after a failed eager release) tries again.
type release struct {
	mu    sync.Mutex
	state releaseState  // guarded by mu
	ended chan struct{} // guarded by mu; closed when the running release ends
}

// run releases the container with fn unless that is done already; while
// another caller runs it, run waits for its outcome (bounded by ctx) and
// takes over if it failed.
func (r *release) run(ctx context.Context, fn func(context.Context) error) error {
	for {
		r.mu.Lock()
		switch r.state {
		case releaseDone:
			r.mu.Unlock()
			return nil
		case releaseRunning:
			ended := r.ended
			r.mu.Unlock()
			select {
			case <-ended:
				continue
			case <-ctx.Done():
				return fmt.Errorf("wait for the container's release after its exit: %w", ctx.Err())
			}
		}
		r.state = releaseRunning
		r.ended = make(chan struct{})
		r.mu.Unlock()
		err := fn(ctx)
		r.mu.Lock()
		r.state = releasePending
		if err == nil {
			r.state = releaseDone
		}
		close(r.ended)
		r.mu.Unlock()
		return err
	}
}

// wait returns once no release runs (bounded by ctx).
func (r *release) wait(ctx context.Context) error {
	r.mu.Lock()
	running, ended := r.state == releaseRunning, r.ended
	r.mu.Unlock()
	if !running {
		return nil
	}
	select {
	case <-ended:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for the container's release after its exit: %w", ctx.Err())
	}
}

// started reports whether a release runs or has succeeded: the container
// has no processes left then.
func (r *release) started() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state != releasePending
}

// releaseContainer deletes the runtime's container and unmounts the
// rootfs. A container the runtime no longer knows counts as deleted: an
// earlier release, or berth-shim delete, got there first. With
// deferRuntimeDelete it unmounts the rootfs and only starts the runtime's
// delete, which the shim finishes before it exits (deleteRuntimeAfter).
func (s *Service) releaseContainer(ctx context.Context) error {
	s.mu.Lock()
	deferred := s.deferRuntimeDelete
	s.mu.Unlock()
	if deferred {
		if err := s.unmountRootfs(); err != nil {
			return err
		}
		s.deleteRuntimeAfter()
		return nil
	}
	if err := s.deleteRuntime(ctx); err != nil {
		return err
	}
	return s.unmountRootfs()
}

// deleteRuntime deletes the runtime's container and stops watching its
// cgroup.
func (s *Service) deleteRuntime(ctx context.Context) error {
	span := spantrace.Start("runc delete")
	err := s.runtime.Delete(ctx, s.cfg.ID, &runc.DeleteOpts{Force: true})
	span.End()
	if err != nil {
		if _, serr := s.runtime.State(ctx, s.cfg.ID); serr == nil {
			return s.runtimeError(err, "delete")
		}
	}
	s.mu.Lock()
	if s.cg != nil {
		s.cg.Close()
		s.cg = nil
	}
	s.mu.Unlock()
	return nil
}

// unmountRootfs unmounts whatever is mounted at the bundle's rootfs, and
// then clears the volatile marks of its overlays (see volatile.go).
func (s *Service) unmountRootfs() error {
	defer spantrace.Start("unmount rootfs").End()
	if err := mount.UnmountAll(filepath.Join(s.cfg.Bundle, "rootfs"), 0); err != nil {
		return fmt.Errorf("unmount rootfs: %w", err)
	}
	s.mu.Lock()
	workdirs := s.volatileWorkdirs
	s.volatileWorkdirs = nil
	s.mu.Unlock()
	if err := clearVolatileMarks(workdirs); err != nil {
		return fmt.Errorf("unmount rootfs: clear overlayfs's volatile mark: %w", err)
	}
	return nil
}

// Deferring the runtime's delete. A task created with cleanup_on_exit
// whose processes are all gone with its init (releaseLeavesNoProcess)
// needs nothing more of its release for Delete to return and its snapshot
// to be removed than the rootfs unmounted: what the runtime's delete does
// then (its state folder and the container's empty cgroup removed) is
// bookkeeping, and runc takes a process start and more for it, 20-30 ms
// on the critical path of every `run --rm`. So the eager release unmounts
// the rootfs, then runs the runtime's delete in the background: Delete
// answers at once, and the shim, once shut down, exits only after that
// delete ended (WaitRuntimeDelete), bounded by runtimeDeleteTimeout. The
// daemon keeps the task's id reserved until the shim has exited (see
// supervisor's aside.go), so a new task of the same id never meets the
// runtime's container of the old one.
//
// The background delete starts only once the shim is told to shut down
// (the daemon does so shortly after the task's Delete: supervisor's
// asideShutdownDelay, after the client's last calls) or runtimeDeleteDelay
// after the release, whichever comes first: started at the release, its
// runc process (8-25 ms of CPU here) ran beside the exit's way to the
// client and the client's Delete, on a 2-CPU host their competitor for
// the CPU. Started at the shutdown, `berthctl run --rm` took 0.95 of the
// time (daemonbench, 20 interleaved rounds against the build before).

// runtimeDeleteTimeout bounds a deferred runtime delete; the shim's exit
// waits at most this long for it.
const runtimeDeleteTimeout = 4 * time.Second

// runtimeDeleteDelay bounds how long a deferred runtime delete waits for
// the shim's shutdown before it starts anyway: a task whose client does
// not delete it (gone, or slow) leaves no runtime container for longer.
const runtimeDeleteDelay = time.Second

// deleteRuntimeAfter starts the deferred runtime delete, once. Its
// context is its own: the shim's shutdown, which ends the runtime calls
// of a task (life), must not end this one, which the shutdown waits for.
func (s *Service) deleteRuntimeAfter() {
	s.mu.Lock()
	if s.runtimeDeleted != nil {
		s.mu.Unlock()
		return
	}
	done := make(chan struct{})
	s.runtimeDeleted = done
	s.mu.Unlock()
	go func() {
		defer close(done)
		t := time.NewTimer(runtimeDeleteDelay)
		select {
		case <-s.life.Done(): // shut down
		case <-s.hurry:
		case <-t.C:
		}
		t.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), runtimeDeleteTimeout)
		defer cancel()
		if err := s.deleteRuntime(ctx); err != nil {
			s.log.Error("delete the runtime's container after the release; its state folder and cgroup may be left", "error", err)
		}
	}()
}

// WaitRuntimeDelete waits, at most limit, for a deferred runtime delete
// to end, starting it if it still waits for the shutdown; the shim calls
// it before it exits. It reports whether none is left running.
func (s *Service) WaitRuntimeDelete(limit time.Duration) bool {
	s.hurryOnce.Do(func() { close(s.hurry) })
	s.mu.Lock()
	done := s.runtimeDeleted
	s.mu.Unlock()
	if done == nil {
		return true
	}
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// releaseOnExit is the eager release of a task created with
// cleanup_on_exit, run once the init's exit is persisted and published.
// It leaves the container to Delete while exec processes still run
// (Delete refuses then, as without the option): releasing would kill
// them. A release that fails is logged; Delete tries again.
func (s *Service) releaseOnExit() {
	s.mu.Lock()
	eager := s.cleanupOnExit
	s.mu.Unlock()
	if !eager {
		return
	}
	if live := s.liveExecs(); len(live) > 0 {
		s.log.Info("init exited; exec processes still run: the container is released on Delete", "execs", live)
		return
	}
	ctx, cancel := s.detach(context.Background())
	defer cancel()
	if err := s.rel.run(ctx, s.releaseContainer); err != nil {
		s.log.Warn("release the container after its exit; Delete tries again", "error", err)
	}
}

// liveExecs returns the ids of the exec processes that run.
func (s *Service) liveExecs() []string {
	s.mu.Lock()
	execs := make([]*process, 0, len(s.execs))
	for _, e := range s.execs {
		execs = append(execs, e)
	}
	s.mu.Unlock()
	var live []string
	for _, e := range execs {
		if st := e.Status(); st != Stopped && st != Deleted && st != Created {
			live = append(live, e.id)
		}
	}
	return live
}
