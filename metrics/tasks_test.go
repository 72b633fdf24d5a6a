package metrics

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	typesv1 "github.com/berthrt/berth/proto/types/v1"
)

// fakeTasks counts Stats calls and the most that ran at once; the task
// named "hung" answers only when its context ends.
type fakeTasks struct {
	n                    int
	calls, running, most atomic.Int32
}

func (f *fakeTasks) Tasks() []Task {
	var out []Task
	for i := range f.n {
		id := fmt.Sprintf("c%d", i)
		if i == 0 {
			id = "hung"
		}
		out = append(out, Task{Namespace: "ns", ID: id, Stats: func(ctx context.Context) (*typesv1.Metrics, error) {
			f.calls.Add(1)
			now := f.running.Add(1)
			defer f.running.Add(-1)
			for {
				most := f.most.Load()
				if now <= most || f.most.CompareAndSwap(most, now) {
					break
				}
			}
			if id == "hung" {
				<-ctx.Done()
				return nil, ctx.Err()
			}
			time.Sleep(time.Millisecond) // let calls overlap
			return &typesv1.Metrics{PidsCurrent: 1}, nil
		}})
	}
	return out
}

// TestStatsCacheBoundsTheCost: scrapes within MinInterval make no call; a
// round asks each shim once, never more than Concurrency at a time, and a
// shim that hangs costs ShimTimeout, not the scrape.
func TestStatsCacheBoundsTheCost(t *testing.T) {
	tasks := &fakeTasks{n: 20}
	c := newTaskCollector(tasks, StatsOptions{MinInterval: time.Hour, Concurrency: 3, ShimTimeout: 50 * time.Millisecond})
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	for range 5 {
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		series := 0
		for _, f := range families {
			if f.GetName() == "berth_container_pids" {
				series = len(f.GetMetric())
			}
		}
		if series != tasks.n-1 {
			t.Errorf("%d containers in berth_container_pids, want %d (all but the hung one)", series, tasks.n-1)
		}
	}
	if got := tasks.calls.Load(); got != int32(tasks.n) {
		t.Errorf("%d Stats calls for 5 scrapes, want %d (one round)", got, tasks.n)
	}
	if most := tasks.most.Load(); most > 3 {
		t.Errorf("%d Stats calls at once, want at most 3", most)
	}
}
