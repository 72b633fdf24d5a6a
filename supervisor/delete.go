package supervisor

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/events/topics"
	"github.com/berthrt/berth/internal/spantrace"
	"github.com/berthrt/berth/shimapi"
)

const (
	// deleteEventWait bounds the wait for the shim's own TaskDelete to be
	// forwarded before the shim is shut down; after it the supervisor
	// publishes the event itself.
	deleteEventWait = 2 * time.Second
	// shutdownWait bounds the wait for a shim to exit after Shutdown; after
	// it the shim is killed.
	shutdownWait = 2 * time.Second
)

// Delete deletes task (ns, id): the container and its init process through
// the shim (refused with ErrFailedPrecondition while it runs), then the
// shim, the bundle and the runtime state. For a task whose shim died it
// publishes the TaskDelete itself and removes the bundle. It returns the
// init process's pid and exit.
func (s *Supervisor) Delete(ctx context.Context, ns, id string) (*shimapi.DeleteResponse, error) {
	sh, err := s.Get(ns, id)
	if err != nil {
		return nil, err
	}
	sh.deleteMu.Lock()
	defer sh.deleteMu.Unlock()
	// A task's delete ends a container's run: a delayed refill of the
	// spare pool waits only for its client's last calls
	// (spareRefillAfterDelete).
	defer s.refillAfterDelete()
	switch st := sh.getState(); st {
	case stateRestoring:
		return nil, fmt.Errorf("delete task %s: shim not restored yet: %w", sh, errdefs.ErrUnavailable)
	case stateDeleting:
		return nil, fmt.Errorf("delete task %s: deleted already: %w", sh, errdefs.ErrNotFound)
	case stateRunning:
		span := spantrace.Start("shim Delete")
		resp, err := sh.Task().Delete(ctx, &shimapi.DeleteRequest{Id: id})
		span.End()
		if err == nil {
			return s.deleteLive(ctx, sh, resp)
		}
		if st := sh.getState(); st != stateReaping && st != stateStopped {
			if !errdefs.IsNotFound(err) {
				return nil, fmt.Errorf("delete task %s: %w", sh, err)
			}
			// The live shim has no container: an earlier daemon died
			// between the shim's delete and the task-deleted marker (or
			// during Create). Finish the delete rather than leave a task
			// that can never be deleted.
			s.log.Warn("shim has no container; finishing its delete", "task", sh.String(), "error", err)
			return s.deleteLive(ctx, sh, sh.deletedResponse())
		}
		// The shim died under the call: delete the stopped task.
	}
	return s.deleteStopped(ctx, sh)
}

// deleteLive finishes the delete of a task whose shim deleted the
// container: it makes sure the shim's TaskDelete was forwarded, shuts the
// shim down and removes the bundle.
func (s *Supervisor) deleteLive(ctx context.Context, sh *Shim, resp *shimapi.DeleteResponse) (*shimapi.DeleteResponse, error) {
	if !sh.setState(stateDeleting, stateRunning) {
		return s.deleteStopped(ctx, sh) // died just now
	}
	span := spantrace.Start("wait TaskDelete forwarded")
	t := time.NewTimer(deleteEventWait)
	select {
	case <-sh.deleteForwarded:
	case <-t.C:
	case <-ctx.Done():
	}
	t.Stop()
	span.End()
	forwarded := false
	select {
	case <-sh.deleteForwarded:
		forwarded = true
		// Before the shim goes: a daemon killed from here on leaves a
		// marked bundle, which Restore removes (killing the shim if it
		// still runs), not a dead shim's bundle that it would restore as
		// a stopped task.
		if err := writeMarker(sh.Bundle, deletedMarker); err != nil {
			s.log.Error("persist task-deleted marker", "task", sh.String(), "error", err)
		}
	default:
	}
	// Watch the shim's exit through a pidfd, opened while the pid surely
	// names the serving shim: its exit then wakes us at once, where a poll
	// of the pid would add up to its interval to every delete.
	var w *pidWatch
	if pid := sh.ShimPid(); pid != 0 && shimapi.ServesBundle(pid, sh.Bundle) {
		w = s.watchPid(pid)
	}
	closeWatch := func() {
		if w != nil {
			w.close()
		}
	}
	if forwarded {
		// The task is deleted and marked so: its id can go to a new task
		// at once, while the shim is shut down (a little later: see
		// asideShutdownDelay) and exits and the bundle is removed in the
		// background, aside.
		span = spantrace.Start("set bundle aside")
		dir, err := s.setAside(sh)
		span.End()
		if err == nil {
			a := s.removeAside(sh)
			finish := func() {
				defer closeWatch()
				defer s.asideGone(sh, a)
				s.shutdownAside(sh, w, dir, a)
				s.finishAside(sh, w, dir)
			}
			if !s.goroutine(finish) {
				finish() // Close has begun: no goroutine may start
			}
			return resp, nil
		}
		s.log.Warn("set bundle aside; removing it in place", "task", sh.String(), "error", err)
	}
	s.shutdownShim(ctx, sh)
	defer closeWatch()
	span = spantrace.Start("wait shim exit")
	if w != nil {
		s.waitShimExit(sh, w, sh.Bundle)
	}
	span.End()
	if !forwarded {
		select {
		case <-sh.deleteForwarded:
		default:
			// The event loop is stopped: no race with its own TaskDelete.
			env := deleteEnvelope(sh.ID, resp)
			if err := s.forward(s.ctx, sh.Namespace, sh.ID, env); err != nil {
				s.log.Error("publish task delete", "task", sh.String(), "error", err)
			}
		}
		// A daemon that dies from here on finishes the removal on Restore.
		if err := writeMarker(sh.Bundle, deletedMarker); err != nil {
			s.log.Error("persist task-deleted marker", "task", sh.String(), "error", err)
		}
	}
	span = spantrace.Start("remove bundle")
	defer span.End()
	s.remove(sh)
	if err := sh.s.removeBundle(sh.Bundle, sh.runtimeState()); err != nil {
		return resp, fmt.Errorf("delete task %s: remove bundle: %w", sh, err)
	}
	return resp, nil
}

// shutdownShim shuts down the shim of sh, whose container is deleted, and
// then closes the supervisor's connection to it: the shim's server waits
// for open connections before it exits (run closes ours, once cancelled).
// The shim refuses a plain Shutdown while its init process is known,
// deleted or not: hence Now.
func (s *Supervisor) shutdownShim(ctx context.Context, sh *Shim) {
	span := spantrace.Start("shim Shutdown")
	if _, err := sh.Task().Shutdown(ctx, &shimapi.ShutdownRequest{Id: sh.ID, Now: true}); err != nil {
		s.log.Warn("shut down shim", "task", sh.String(), "error", err)
	}
	span.End()
	sh.cancel()
	<-sh.done
	sh.dropConn()
}

// waitShimExit waits up to shutdownWait for the shut-down shim watched by w
// to exit, and kills it when it does not. bundle is the folder the shim
// serves now (its bundle, or where the bundle was set aside).
func (s *Supervisor) waitShimExit(sh *Shim, w *pidWatch, bundle string) {
	s.waitShimExitFor(sh, w, bundle, shutdownWait)
}

// waitShimExitFor is waitShimExit with the bound given.
func (s *Supervisor) waitShimExitFor(sh *Shim, w *pidWatch, bundle string, limit time.Duration) {
	if w.pidfd == nil {
		// No pidfd: the watch polls slowly, so poll here, checking the
		// pid is still the shim's (pids are reused).
		deadline := time.Now().Add(limit)
		for shimapi.ServesBundle(w.pid, sh.Bundle) || servesFrom(w.pid, bundle) {
			if time.Now().After(deadline) {
				s.log.Warn("shim did not exit after shutdown; killing it", "task", sh.String(), "pid", w.pid)
				unix.Kill(w.pid, unix.SIGKILL)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		return
	}
	if !w.waitExit(context.Background(), limit) {
		s.log.Warn("shim did not exit after shutdown; killing it", "task", sh.String(), "pid", w.pid)
		w.kill(unix.SIGKILL)
	}
}

// deleteStopped deletes a task whose shim is gone: it waits for the death
// to be handled, publishes the TaskDelete and removes the bundle.
func (s *Supervisor) deleteStopped(ctx context.Context, sh *Shim) (*shimapi.DeleteResponse, error) {
	select {
	case <-sh.reaped:
	case <-ctx.Done():
		return nil, fmt.Errorf("delete task %s: shim cleanup under way: %w", sh, ctx.Err())
	}
	exit, ok := sh.Exited()
	if !ok {
		// reap was cut short by Close.
		return nil, fmt.Errorf("delete task %s: supervisor closed: %w", sh, errdefs.ErrUnavailable)
	}
	resp := &shimapi.DeleteResponse{Pid: exit.Pid, ExitStatus: exit.Status, ExitedAt: timestamppb.New(exit.ExitedAt)}
	// Published before the bundle goes, and marked: a retry after a failed
	// removal, or a Restore, finishes the removal without publishing again.
	if !hasMarker(sh.Bundle, deletedMarker) {
		if err := s.forward(ctx, sh.Namespace, sh.ID, deleteEnvelope(sh.ID, resp)); err != nil {
			return nil, fmt.Errorf("delete task %s: publish: %w", sh, err)
		}
		if err := writeMarker(sh.Bundle, deletedMarker); err != nil {
			s.log.Error("persist task-deleted marker", "task", sh.String(), "error", err)
		}
	}
	if err := sh.s.removeBundle(sh.Bundle, sh.runtimeState()); err != nil {
		return nil, fmt.Errorf("delete task %s: remove bundle: %w: %w", sh, err, errdefs.ErrFailedPrecondition)
	}
	sh.setState(stateDeleting, stateStopped)
	sh.cancel()
	s.remove(sh)
	return resp, nil
}

// deletedResponse is what is known of the init process of a shim whose
// container was deleted already: the persisted exit, or the last pid.
func (sh *Shim) deletedResponse() *shimapi.DeleteResponse {
	if st, err := shimapi.ReadExitFile(sh.Bundle); err == nil {
		return &shimapi.DeleteResponse{Pid: st.Pid, ExitStatus: st.Status, ExitedAt: timestamppb.New(st.ExitedAt)}
	}
	return &shimapi.DeleteResponse{Pid: sh.TaskPid()}
}

// deleteEnvelope is the TaskDelete the supervisor publishes itself.
func deleteEnvelope(id string, resp *shimapi.DeleteResponse) *shimapi.Envelope {
	return &shimapi.Envelope{
		Timestamp: timestamppb.Now(),
		Topic:     topics.TaskDelete,
		Event: &shimapi.Envelope_Delete{Delete: &shimapi.TaskDelete{
			ContainerId: id, Pid: resp.Pid, ExitStatus: resp.ExitStatus, ExitedAt: resp.ExitedAt,
		}},
	}
}
