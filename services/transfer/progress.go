package transfer

import (
	"sync"
	"time"

	"github.com/berthrt/berth/distribution"
	"github.com/berthrt/berth/internal/apiconv"
	api "github.com/berthrt/berth/proto/transfer/v1"
)

// relayInterval is how often a blob's byte count is sent at most.
const relayInterval = 100 * time.Millisecond

// relay forwards the progress reports of a transfer to its stream, apart
// from the transfer: report (called by distribution, which waits for it)
// only records the latest report of each blob; the relay's goroutine sends
// what changed every relayInterval, and at once when a blob's status
// changes. A slow client therefore never slows the transfer; it sees
// fewer, later reports.
type relay struct {
	send func([]*api.Progress) error

	mu      sync.Mutex               // guards pending, order and status
	pending map[string]*api.Progress // by ref: the latest report not yet sent
	order   []string                 // the refs of pending, first reported first
	status  map[string]string        // by ref: the last status reported

	wake chan struct{} // a status changed; buffered 1
	stop chan struct{} // closed by close: flush and return
	done chan error    // the goroutine's result: the first send error
}

// newRelay starts a relay that sends with send until close.
func newRelay(send func([]*api.Progress) error) *relay {
	return newRelayEvery(send, relayInterval)
}

// newRelayEvery is newRelay with the byte counts sent every interval.
func newRelayEvery(send func([]*api.Progress) error, interval time.Duration) *relay {
	r := &relay{
		send:    send,
		pending: map[string]*api.Progress{},
		status:  map[string]string{},
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan error, 1),
	}
	go r.run(interval)
	return r
}

// report records p; it is a distribution.ProgressFunc.
func (r *relay) report(p distribution.Progress) {
	r.mu.Lock()
	if _, ok := r.pending[p.Ref]; !ok {
		r.order = append(r.order, p.Ref)
	}
	r.pending[p.Ref] = apiconv.ProgressToProto(p)
	changed := r.status[p.Ref] != string(p.Status)
	r.status[p.Ref] = string(p.Status)
	r.mu.Unlock()
	if changed {
		select {
		case r.wake <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
}

// run is the relay's goroutine: it owns the stream's Send until close.
// After a send fails it keeps draining without sending, so that report
// never blocks; the transfer learns of a client gone from its context.
func (r *relay) run(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var err error
	for {
		select {
		case <-r.wake:
		case <-t.C:
		case <-r.stop:
			if batch := r.take(); err == nil && len(batch) > 0 {
				err = r.send(batch)
			}
			r.done <- err
			return
		}
		if batch := r.take(); err == nil && len(batch) > 0 {
			err = r.send(batch)
		}
	}
}

// take returns the pending reports and forgets them.
func (r *relay) take() []*api.Progress {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.order) == 0 {
		return nil
	}
	batch := make([]*api.Progress, 0, len(r.order))
	for _, ref := range r.order {
		batch = append(batch, r.pending[ref])
	}
	clear(r.pending)
	r.order = r.order[:0]
	return batch
}

// close sends what is pending, stops the goroutine and returns the first
// send error. report must not be called after close.
func (r *relay) close() error {
	close(r.stop)
	return <-r.done
}
