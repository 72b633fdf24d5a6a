package cri

import (
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestEventHubDropsSlowSubscriber checks that a subscriber that stops
// reading is dropped with an error once its buffer is full, without the
// publisher waiting, while one that reads gets every event in order.
func TestEventHubDropsSlowSubscriber(t *testing.T) {
	var h eventHub
	slow, err := h.subscribe()
	if err != nil {
		t.Fatal(err)
	}
	fast, err := h.subscribe()
	if err != nil {
		t.Fatal(err)
	}
	for i := range eventBuffer + 10 {
		h.publish(&runtimeapi.ContainerEventResponse{CreatedAt: int64(i)})
		select {
		case ev := <-fast.ch:
			if ev.CreatedAt != int64(i) {
				t.Fatalf("fast subscriber: event %d: want %d", ev.CreatedAt, i)
			}
		default:
			t.Fatalf("fast subscriber: event %d not delivered", i)
		}
	}
	select {
	case <-slow.gone:
		if slow.err == nil {
			t.Fatal("slow subscriber dropped without an error")
		}
	default:
		t.Fatal("slow subscriber not dropped")
	}
	// What it had buffered is still readable, in order: a gap-free prefix.
	if n := len(slow.ch); n != eventBuffer {
		t.Fatalf("slow subscriber holds %d events: want %d", n, eventBuffer)
	}
	for i := range eventBuffer {
		if ev := <-slow.ch; ev.CreatedAt != int64(i) {
			t.Fatalf("slow subscriber: event %d: want %d", ev.CreatedAt, i)
		}
	}
	select {
	case <-fast.gone:
		t.Fatalf("fast subscriber dropped: %v", fast.err)
	default:
	}
	h.unsubscribe(fast)
	if len(h.subs) != 0 {
		t.Fatalf("%d subscribers left", len(h.subs))
	}
}

// TestEventHubLimit checks the bound on subscribers.
func TestEventHubLimit(t *testing.T) {
	var h eventHub
	for range maxEventSubscribers {
		if _, err := h.subscribe(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.subscribe(); err == nil {
		t.Fatal("subscriber beyond the limit accepted")
	}
}

// TestEventHubBacklog checks that events published while no one
// subscribed are kept, bounded, for the first subscriber only.
func TestEventHubBacklog(t *testing.T) {
	var h eventHub
	evs := make([]*runtimeapi.ContainerEventResponse, eventBuffer+5)
	for i := range evs {
		evs[i] = &runtimeapi.ContainerEventResponse{CreatedAt: int64(i)}
	}
	if lost := h.publishOrKeep(evs[:2]); lost != 0 {
		t.Fatalf("lost %d of 2", lost)
	}
	if lost := h.publishOrKeep(evs[2:]); lost != 5 {
		t.Fatalf("lost %d past the bound: want 5", lost)
	}
	first, err := h.subscribe()
	if err != nil {
		t.Fatal(err)
	}
	second, err := h.subscribe()
	if err != nil {
		t.Fatal(err)
	}
	if len(first.ch) != eventBuffer || len(second.ch) != 0 {
		t.Fatalf("first holds %d, second %d: want %d and 0", len(first.ch), len(second.ch), eventBuffer)
	}
	for i := range eventBuffer {
		if ev := <-first.ch; ev.CreatedAt != int64(i) {
			t.Fatalf("backlog event %d: want %d", ev.CreatedAt, i)
		}
	}
	// With subscribers there, nothing is kept.
	h.publishOrKeep(evs[:1])
	if len(first.ch) != 1 || len(second.ch) != 1 || len(h.backlog) != 0 {
		t.Fatalf("published with subscribers: %d %d, backlog %d", len(first.ch), len(second.ch), len(h.backlog))
	}
}
