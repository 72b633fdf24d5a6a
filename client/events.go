package client

import (
	"context"
	"fmt"

	"github.com/containerd/ttrpc"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/events"
	"github.com/berthrt/berth/internal/apiconv"
	eventsv1 "github.com/berthrt/berth/proto/events/v1"
)

// Subscribe streams every event from now on that matches any of the filters
// (all events, of every namespace, without filters), e.g.
// `topic=="/tasks/exit",namespace=="ci"`.
//
// Both channels are closed when the subscription ends. When ctx ended it,
// errs receives nothing; otherwise errs receives why before it is closed:
// the daemon's error (a subscriber that falls too far behind is ended with
// one), or ErrUnavailable when the connection closed or the daemon ended the
// stream (Client.Close, a daemon restart).
//
// Each subscription has a connection of its own: ttrpc cannot cancel a
// stream, but closing its connection ends it on the daemon's side too.
func (c *Client) Subscribe(ctx context.Context, filters ...string) (<-chan *events.Envelope, <-chan error) {
	evs := make(chan *events.Envelope)
	errs := make(chan error, 1) // the one error never blocks the sender
	fail := func(err error) (<-chan *events.Envelope, <-chan error) {
		errs <- err
		close(errs)
		close(evs)
		return evs, errs
	}
	conn, err := c.dial()
	if err != nil {
		return fail(err)
	}
	if !c.addSubscription(conn) {
		conn.Close()
		return fail(fmt.Errorf("subscribe: client closed: %w", errdefs.ErrUnavailable))
	}
	stream, err := eventsv1.NewEventsClient(conn).Subscribe(ctx, &eventsv1.SubscribeRequest{Filters: filters})
	if err != nil {
		c.removeSubscription(conn)
		return fail(fmt.Errorf("subscribe: %w", errdefs.FromTTRPC(err)))
	}
	go func() {
		defer close(evs)
		defer close(errs)
		defer c.removeSubscription(conn)
		for {
			env, err := stream.Recv()
			if err != nil {
				if ctx.Err() == nil {
					errs <- subscriptionError(err)
				}
				return
			}
			select {
			case evs <- apiconv.EnvelopeFromProto(env):
			case <-ctx.Done():
				return
			}
		}
	}()
	return evs, errs
}

func subscriptionError(err error) error {
	if connectionLost(err) {
		return fmt.Errorf("subscription ended: %w: %w", errdefs.ErrUnavailable, err)
	}
	return fmt.Errorf("subscription: %w", errdefs.FromTTRPC(err))
}

func (c *Client) addSubscription(conn *ttrpc.Client) bool {
	c.subsMu.Lock()
	defer c.subsMu.Unlock()
	if c.closed {
		return false
	}
	c.subs[conn] = struct{}{}
	return true
}

// removeSubscription forgets conn and closes it, which ends the stream on
// the daemon's side.
func (c *Client) removeSubscription(conn *ttrpc.Client) {
	c.subsMu.Lock()
	delete(c.subs, conn)
	c.subsMu.Unlock()
	conn.Close()
}
