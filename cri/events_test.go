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
