package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

// gogc reads the GC percent in force without changing it.
func gogc() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

// TestGCPercentAfterFirstCollection: a shim starts with firstGCPercent, and
// gcPercent is in force once a garbage collection has run.
func TestGCPercentAfterFirstCollection(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })
	setGCPercent()
	if got := gogc(); got != firstGCPercent {
		t.Fatalf("GOGC %d before a collection, want %d", got, firstGCPercent)
	}
	runtime.GC()
	// The cleanup runs on the runtime's cleanup goroutine after the
	// collection; bounded wait.
	deadline := time.Now().Add(10 * time.Second)
	for gogc() != gcPercent {
		if time.Now().After(deadline) {
			t.Fatalf("GOGC %d 10 s after a collection, want %d", gogc(), gcPercent)
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
}
