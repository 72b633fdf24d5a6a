package transfer

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/berthrt/berth/distribution"
	api "github.com/berthrt/berth/proto/transfer/v1"
)

// TestRelay: byte reports of a blob are coalesced to its latest, a status
// change is sent without waiting for the tick, close sends what is
// pending, and a failing send never blocks report.
func TestRelay(t *testing.T) {
	var (
		mu    sync.Mutex
		sent  [][]*api.Progress
		first = make(chan struct{}, 1)
	)
	// A tick that never comes within the test: what is sent before close
	// was sent for a status change.
	r := newRelayEvery(func(b []*api.Progress) error {
		mu.Lock()
		sent = append(sent, b)
		mu.Unlock()
		select {
		case first <- struct{}{}:
		default:
		}
		return nil
	}, time.Hour)
	r.report(distribution.Progress{Ref: "a", Status: distribution.StatusDownloading, Offset: 0, Total: 100})
	select {
	case <-first:
	case <-time.After(time.Minute):
		t.Fatal("a status change waited for the tick")
	}
	for off := int64(1); off <= 50; off++ {
		r.report(distribution.Progress{Ref: "a", Status: distribution.StatusDownloading, Offset: off, Total: 100})
	}
	r.report(distribution.Progress{Ref: "b", Status: distribution.StatusExists, Offset: 7, Total: 7})
	if err := r.close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	var reports int
	last := map[string]*api.Progress{}
	for _, b := range sent {
		reports += len(b)
		for _, p := range b {
			last[p.GetRef()] = p
		}
	}
	if reports > 4 {
		t.Errorf("%d reports sent for 52 made; want them coalesced", reports)
	}
	if last["a"].GetOffset() != 50 || last["b"].GetStatus() != "exists" {
		t.Errorf("last reports: %v", last)
	}

	failing := newRelay(func([]*api.Progress) error { return errors.New("client gone") })
	for i := range 1000 {
		failing.report(distribution.Progress{Ref: "x", Status: distribution.Status([]string{"waiting", "downloading"}[i%2])})
	}
	if err := failing.close(); err == nil {
		t.Error("close returned no error after a failed send")
	}
}
