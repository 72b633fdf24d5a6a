package supervisor

import (
	"context"
	"errors"
	"time"

	"github.com/berthrt/berth/shimapi"
	"github.com/containerd/ttrpc"
)

// eventLoop reads the shim's Events stream on one connection, forwards each
// envelope and acks it. It reopens the stream when the shim ends it (a
// second reader took over, say) and returns when ctx ends or the connection
// closes: run owns what follows.
func (sh *Shim) eventLoop(ctx context.Context, task shimapi.TaskClient) {
	b := newBackoff(50*time.Millisecond, 2*time.Second)
	for ctx.Err() == nil {
		stream, err := task.Events(ctx, &shimapi.EventsRequest{})
		if err != nil {
			if errors.Is(err, ttrpc.ErrClosed) || ctx.Err() != nil {
				return
			}
			sh.s.log.Warn("open event stream", "task", sh.String(), "error", err)
			if b.wait(ctx) != nil {
				return
			}
			continue
		}
		for {
			env, err := stream.Recv()
			if err != nil {
				if ctx.Err() == nil && !errors.Is(err, ttrpc.ErrClosed) {
					sh.s.log.Debug("event stream ended", "task", sh.String(), "error", err)
				}
				break
			}
			if !sh.deliver(ctx, task, env) {
				return
			}
			b.reset()
		}
		// A stream that ends at once again and again (two daemons taking
		// turns) must not spin.
		if b.wait(ctx) != nil {
			return
		}
	}
}

// deliver forwards env unless it was forwarded before, then acks it. It
// reports false when ctx ended before the event was forwarded.
func (sh *Shim) deliver(ctx context.Context, task shimapi.TaskClient, env *shimapi.Envelope) bool {
	if env.Seq > sh.lastSeq {
		initExit := env.GetExit() != nil && env.GetExit().ExecId == ""
		// The marker says an earlier daemon forwarded this very exit and
		// died before its ack arrived: ack it, do not publish it again.
		if !(initExit && hasMarker(sh.Bundle, publishedMarker)) {
			if err := sh.s.forward(ctx, sh.Namespace, sh.ID, env); err != nil {
				return false
			}
			if initExit {
				// Before the ack: once acked, the shim forgets the event.
				if err := writeMarker(sh.Bundle, publishedMarker); err != nil {
					sh.s.log.Error("persist exit-published marker", "task", sh.String(), "error", err)
				}
			}
		}
		sh.lastSeq = env.Seq
		if d := env.GetDelete(); d != nil && d.ExecId == "" {
			sh.deleteForwardedOnce.Do(func() { close(sh.deleteForwarded) })
		}
		if c := env.GetCreate(); c != nil {
			sh.mu.Lock()
			sh.taskPid = c.Pid
			sh.mu.Unlock()
		}
	}
	if _, err := task.AckEvents(ctx, &shimapi.AckEventsRequest{Seq: env.Seq}); err != nil && ctx.Err() == nil {
		// The next stream sends it again; lastSeq keeps it from being
		// forwarded twice.
		sh.s.log.Debug("ack event", "task", sh.String(), "seq", env.Seq, "error", err)
	}
	return true
}
