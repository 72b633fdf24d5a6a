package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthrt/berth/errdefs"
	eventsv1 "github.com/berthrt/berth/proto/events/v1"
	"github.com/berthrt/berth/shimapi"
)

func TestSubscribe(t *testing.T) {
	c, f := connect(t)
	payload, err := anypb.New(&shimapi.TaskExit{ContainerId: "c1", ExitStatus: 3})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1700000000, 0)
	f.events.send = []*eventsv1.Envelope{
		{Timestamp: timestamppb.New(at), Namespace: "ci", Topic: "/tasks/exit", Event: payload},
		{Namespace: "ci", Topic: "/tasks/delete"},
	}
	ctx, cancel := context.WithCancel(context.Background())
	evs, errs := c.Subscribe(ctx, `topic~="/tasks/"`)
	for i, topic := range []string{"/tasks/exit", "/tasks/delete"} {
		select {
		case e := <-evs:
			if e.Topic != topic || e.Namespace != "ci" {
				t.Errorf("event %d = %+v", i, e)
			}
			if i == 0 {
				var exit shimapi.TaskExit
				if !e.Timestamp.Equal(at) || e.Event.UnmarshalTo(&exit) != nil || exit.ExitStatus != 3 {
					t.Errorf("event payload %v at %v", e.Event, e.Timestamp)
				}
			}
		case err := <-errs:
			t.Fatalf("error: %v", err)
		case <-time.After(5 * time.Second):
			t.Fatal("no event")
		}
	}
	f.events.mu.Lock()
	filters := f.events.filters
	f.events.mu.Unlock()
	if len(filters) != 1 || filters[0] != `topic~="/tasks/"` {
		t.Errorf("daemon saw filters %v", filters)
	}

	cancel()
	if err, ok := <-errs; ok {
		t.Errorf("error after cancel: %v", err)
	}
	if _, ok := <-evs; ok {
		t.Error("events channel open after cancel")
	}
	select {
	case <-f.events.ended: // the daemon's side of the stream ended too
	case <-time.After(5 * time.Second):
		t.Error("the daemon's stream outlived the subscription")
	}
}

func TestSubscribeError(t *testing.T) {
	c, f := connect(t)
	f.events.fail = errdefs.ErrUnavailable
	evs, errs := c.Subscribe(context.Background())
	select {
	case err := <-errs:
		if !errors.Is(err, errdefs.ErrUnavailable) {
			t.Errorf("error = %v, want class ErrUnavailable", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no error")
	}
	if _, ok := <-evs; ok {
		t.Error("events channel open after the error")
	}
}

func TestSubscribeEndsWithClose(t *testing.T) {
	c, _ := connect(t)
	_, errs := c.Subscribe(context.Background())
	time.Sleep(20 * time.Millisecond) // let the stream start
	c.Close()
	select {
	case err := <-errs:
		if !errors.Is(err, errdefs.ErrUnavailable) {
			t.Errorf("error = %v, want class ErrUnavailable", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("subscription outlived Close")
	}
	if _, errs := c.Subscribe(context.Background()); !errors.Is(<-errs, errdefs.ErrUnavailable) {
		t.Error("Subscribe on a closed client did not fail")
	}
}
