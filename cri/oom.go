package cri

import (
	"time"

	"github.com/berthrt/berth/events/topics"
	eventsv1 "github.com/berthrt/berth/proto/events/v1"
)

// oomGrace bounds how long an exit by SIGKILL that berth did not send
// waits for the OOM event of the same kill: the shim sends the OOM before
// the exit, but the two reach the CRI by different paths (the event
// stream, the task's Wait).
const oomGrace = time.Second

// watchOOM marks the containers that the kernel's OOM killer hit, from
// the daemon's /tasks/oom events, until the server closes.
func (s *Server) watchOOM() {
	ctx := nsContext(s.bgContext())
	for ctx.Err() == nil {
		envs, errs := s.client.Subscribe(ctx, `topic=="`+topics.TaskOOM+`",namespace=="`+Namespace+`"`)
		for done := false; !done; {
			select {
			case env, ok := <-envs:
				if !ok {
					done = true
					continue
				}
				var e eventsv1.TaskOOM
				if env.Event.UnmarshalTo(&e) != nil {
					continue
				}
				if c, err := s.containerByID(e.GetContainerId()); err == nil && c.rec.ID == e.GetContainerId() {
					c.markOOM()
				}
			case err := <-errs:
				if ctx.Err() == nil {
					s.log.Warn("cri: OOM events", "error", err)
				}
				done = true
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second): // the daemon restarts: subscribe again
		}
	}
}

// markOOM records that the OOM killer hit c.
func (c *container) markOOM() {
	c.oomOnce.Do(func() { close(c.oomKilled) })
}

// wasOOMKilled reports whether the OOM killer hit c, waiting up to
// oomGrace for the event when the exit was a SIGKILL berth did not send.
func (c *container) wasOOMKilled(exitCode uint32, killedByBerth bool) bool {
	select {
	case <-c.oomKilled:
		return true
	default:
	}
	if exitCode != 128+9 || killedByBerth {
		return false
	}
	select {
	case <-c.oomKilled:
		return true
	case <-time.After(oomGrace):
		return false
	}
}
