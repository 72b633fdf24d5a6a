package task

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/berthrt/berth/events/topics"
	"github.com/berthrt/berth/shimapi"
)

// eventTimeout bounds every wait for the queue, so that a broken queue
// fails a test instead of hanging it.
const eventTimeout = 5 * time.Second

// quiet is how long a reader must stay silent to count as having nothing.
const quiet = 50 * time.Millisecond

// eventReader runs one stream call on a goroutine and collects what it sends.
type eventReader struct {
	envs   chan *shimapi.Envelope // every envelope sent, in order
	cancel context.CancelFunc
	done   chan struct{} // closed when stream returned
	err    error         // stream's result; read after done
}

// startReader starts a reader whose send never blocks (up to 1024 events)
// and never fails. Cleanup cancels it and waits for stream to return.
func startReader(t *testing.T, q *eventQueue) *eventReader {
	t.Helper()
	return startReaderSend(t, q, nil)
}

// startReaderSend is startReader with a send that first calls fail, whose
// error, if any, is returned from send instead of delivering the envelope.
func startReaderSend(t *testing.T, q *eventQueue, fail func(*shimapi.Envelope) error) *eventReader {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &eventReader{envs: make(chan *shimapi.Envelope, 1024), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = q.stream(ctx, func(e *shimapi.Envelope) error {
			if fail != nil {
				if err := fail(e); err != nil {
					return err
				}
			}
			r.envs <- e
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(eventTimeout):
			t.Errorf("stream did not return after its context was cancelled")
		}
	})
	return r
}

// next returns the next envelope sent to the reader.
func (r *eventReader) next(t *testing.T) *shimapi.Envelope {
	t.Helper()
	select {
	case e := <-r.envs:
		return e
	case <-time.After(eventTimeout):
		t.Fatalf("no event within %v", eventTimeout)
		return nil
	}
}

// nextSeqs returns the sequence numbers of the next n envelopes.
func (r *eventReader) nextSeqs(t *testing.T, n int) []uint64 {
	t.Helper()
	seqs := make([]uint64, 0, n)
	for range n {
		seqs = append(seqs, r.next(t).Seq)
	}
	return seqs
}

// expectNone fails if the reader is sent anything within quiet.
func (r *eventReader) expectNone(t *testing.T) {
	t.Helper()
	select {
	case e := <-r.envs:
		t.Fatalf("unexpected event seq %d topic %s", e.Seq, e.Topic)
	case <-time.After(quiet):
	}
}

// result waits for stream to return and gives its error.
func (r *eventReader) result(t *testing.T) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(eventTimeout):
		t.Fatalf("stream did not return within %v", eventTimeout)
		return nil
	}
}

// stillRunning fails if stream has returned.
func (r *eventReader) stillRunning(t *testing.T) {
	t.Helper()
	select {
	case <-r.done:
		t.Fatalf("stream returned early: %v", r.err)
	case <-time.After(quiet):
	}
}

func nonExit(i int) proto.Message {
	return &shimapi.TaskExecAdded{ContainerId: "c", ExecId: string(rune('a' + i%26))}
}

func exitEv(pid int) proto.Message {
	return &shimapi.TaskExit{ContainerId: "c", Pid: uint32(pid), ExitStatus: 1}
}

func publishN(q *eventQueue, n int) {
	for i := range n {
		q.publish(nonExit(i))
	}
}

func equalSeqs(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func seqRange(from, to uint64) []uint64 {
	var s []uint64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func TestEventQueueSeqStartsAtOneAndIncreases(t *testing.T) {
	q := newEventQueue(DefaultEventQueueMax)
	const n = 20
	before := time.Now()
	publishN(q, n)
	if got := q.len(); got != n {
		t.Fatalf("len = %d, want %d", got, n)
	}
	r := startReader(t, q)
	for want := uint64(1); want <= n; want++ {
		e := r.next(t)
		if e.Seq != want {
			t.Fatalf("seq = %d, want %d", e.Seq, want)
		}
		if e.Dropped != 0 {
			t.Errorf("seq %d: dropped = %d, want 0", e.Seq, e.Dropped)
		}
		if ts := e.GetTimestamp(); ts == nil || ts.AsTime().Before(before.Add(-time.Second)) {
			t.Errorf("seq %d: timestamp %v not set to the publication time", e.Seq, ts)
		}
	}
	r.expectNone(t)
}

func TestEventQueueTopicMatchesPayload(t *testing.T) {
	tests := []struct {
		ev      proto.Message
		topic   string
		payload func(*shimapi.Envelope) proto.Message
	}{
		{&shimapi.TaskCreate{ContainerId: "c", Bundle: "/b", Pid: 1}, topics.TaskCreate,
			func(e *shimapi.Envelope) proto.Message { return e.GetCreate() }},
		{&shimapi.TaskStart{ContainerId: "c", Pid: 1}, topics.TaskStart,
			func(e *shimapi.Envelope) proto.Message { return e.GetStart() }},
		{&shimapi.TaskExit{ContainerId: "c", Pid: 1, ExitStatus: 3}, topics.TaskExit,
			func(e *shimapi.Envelope) proto.Message { return e.GetExit() }},
		{&shimapi.TaskDelete{ContainerId: "c", Pid: 1, ExitStatus: 3}, topics.TaskDelete,
			func(e *shimapi.Envelope) proto.Message { return e.GetDelete() }},
		{&shimapi.TaskOOM{ContainerId: "c"}, topics.TaskOOM,
			func(e *shimapi.Envelope) proto.Message { return e.GetOom() }},
		{&shimapi.TaskExecAdded{ContainerId: "c", ExecId: "e"}, topics.TaskExecAdded,
			func(e *shimapi.Envelope) proto.Message { return e.GetExecAdded() }},
		{&shimapi.TaskExecStarted{ContainerId: "c", ExecId: "e", Pid: 2}, topics.TaskExecStarted,
			func(e *shimapi.Envelope) proto.Message { return e.GetExecStarted() }},
		{&shimapi.TaskPaused{ContainerId: "c"}, topics.TaskPaused,
			func(e *shimapi.Envelope) proto.Message { return e.GetPaused() }},
		{&shimapi.TaskResumed{ContainerId: "c"}, topics.TaskResumed,
			func(e *shimapi.Envelope) proto.Message { return e.GetResumed() }},
	}
	topics := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.topic, func(t *testing.T) {
			if topics[tt.topic] {
				t.Fatalf("topic %s listed twice", tt.topic)
			}
			topics[tt.topic] = true
			q := newEventQueue(DefaultEventQueueMax)
			q.publish(tt.ev)
			e := startReader(t, q).next(t)
			if e.Topic != tt.topic {
				t.Errorf("topic = %q, want %q", e.Topic, tt.topic)
			}
			got := tt.payload(e)
			if got == nil || !proto.Equal(got, tt.ev) {
				t.Errorf("payload = %v, want %v", got, tt.ev)
			}
		})
	}
	if len(topics) != 9 {
		t.Errorf("covered %d topics, want all 9 of events/topics.go", len(topics))
	}
}

func TestEventQueuePublishUnknownTypePanics(t *testing.T) {
	q := newEventQueue(DefaultEventQueueMax)
	defer func() {
		if recover() == nil {
			t.Fatal("publish of a non-event message did not panic")
		}
		if q.len() != 0 {
			t.Errorf("len = %d after a failed publish, want 0", q.len())
		}
	}()
	q.publish(&shimapi.Envelope{})
}

func TestEventQueueStreamPendingThenNew(t *testing.T) {
	q := newEventQueue(DefaultEventQueueMax)
	publishN(q, 3)
	r := startReader(t, q)
	if got := r.nextSeqs(t, 3); !equalSeqs(got, seqRange(1, 3)) {
		t.Fatalf("pending delivered as %v, want %v", got, seqRange(1, 3))
	}
	r.expectNone(t)
	for want := uint64(4); want <= 8; want++ {
		q.publish(nonExit(int(want)))
		if e := r.next(t); e.Seq != want {
			t.Fatalf("new event seq = %d, want %d", e.Seq, want)
		}
	}
	r.expectNone(t)
	// Delivery does not acknowledge.
	if got := q.len(); got != 8 {
		t.Errorf("len = %d after delivery without ack, want 8", got)
	}
}

func TestEventQueueConcurrentPublishersInOrder(t *testing.T) {
	q := newEventQueue(DefaultEventQueueMax)
	r := startReader(t, q)
	const publishers, each = 8, 50
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				q.publish(nonExit(p*each + i))
			}
		})
	}
	wg.Wait()
	got := r.nextSeqs(t, publishers*each)
	if want := seqRange(1, publishers*each); !equalSeqs(got, want) {
		t.Fatalf("delivered out of order or with gaps: %v", got)
	}
	r.expectNone(t)
}

func TestEventQueueAck(t *testing.T) {
	tests := []struct {
		name string
		acks []uint64
		want []uint64 // what a new reader receives
	}{
		{"none", nil, seqRange(1, 5)},
		{"zero", []uint64{0}, seqRange(1, 5)},
		{"first", []uint64{1}, seqRange(2, 5)},
		{"middle", []uint64{3}, seqRange(4, 5)},
		{"all", []uint64{5}, nil},
		{"beyond", []uint64{99}, nil},
		{"increasing", []uint64{1, 2, 4}, seqRange(5, 5)},
		{"older again", []uint64{3, 1}, seqRange(4, 5)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newEventQueue(DefaultEventQueueMax)
			publishN(q, 5)
			first := startReader(t, q)
			if got := first.nextSeqs(t, 5); !equalSeqs(got, seqRange(1, 5)) {
				t.Fatalf("first reader got %v", got)
			}
			for _, s := range tt.acks {
				q.ack(s)
			}
			if got := q.len(); got != len(tt.want) {
				t.Errorf("len = %d, want %d", got, len(tt.want))
			}
			// The first reader already has these; acks send it nothing.
			first.expectNone(t)

			second := startReader(t, q)
			if err := first.result(t); err != nil {
				t.Errorf("first reader ended with %v, want nil", err)
			}
			if got := second.nextSeqs(t, len(tt.want)); !equalSeqs(got, tt.want) {
				t.Fatalf("second reader got %v, want %v", got, tt.want)
			}
			second.expectNone(t)

			// A third reader, again, receives only what is unacknowledged.
			q.publish(nonExit(6))
			if e := second.next(t); e.Seq != 6 {
				t.Fatalf("second reader: new event seq %d, want 6", e.Seq)
			}
			q.ack(5)
			third := startReader(t, q)
			if err := second.result(t); err != nil {
				t.Errorf("second reader ended with %v, want nil", err)
			}
			if got := third.nextSeqs(t, 1); !equalSeqs(got, []uint64{6}) {
				t.Fatalf("third reader got %v, want [6]", got)
			}
			third.expectNone(t)
		})
	}
}

func TestEventQueueNewReaderEndsOld(t *testing.T) {
	q := newEventQueue(DefaultEventQueueMax)
	first := startReader(t, q)
	// Make sure the first reader is streaming before the second starts.
	q.publish(nonExit(0))
	first.next(t)
	first.stillRunning(t)

	second := startReader(t, q)
	if err := first.result(t); err != nil {
		t.Fatalf("first stream returned %v, want nil", err)
	}
	if e := second.next(t); e.Seq != 1 {
		t.Fatalf("second reader: seq %d, want the unacknowledged 1", e.Seq)
	}
	second.stillRunning(t)
	q.publish(nonExit(1))
	if e := second.next(t); e.Seq != 2 {
		t.Fatalf("second reader: seq %d, want 2", e.Seq)
	}
	first.expectNone(t)
}

func TestEventQueueContextCancelEndsStream(t *testing.T) {
	for _, pending := range []int{0, 3} {
		q := newEventQueue(DefaultEventQueueMax)
		publishN(q, pending)
		r := startReader(t, q)
		r.nextSeqs(t, pending)
		r.stillRunning(t)
		r.cancel()
		if err := r.result(t); !errors.Is(err, context.Canceled) {
			t.Fatalf("pending %d: stream returned %v, want context.Canceled", pending, err)
		}
		// Cancelling a reader acknowledges nothing.
		if got := q.len(); got != pending {
			t.Errorf("pending %d: len = %d after cancel", pending, got)
		}
	}
}

func TestEventQueueSendErrorEndsStream(t *testing.T) {
	errSend := errors.New("connection reset")
	tests := []struct {
		name    string
		pending int    // published before the reader starts
		later   int    // published after it started
		failAt  uint64 // seq whose send fails
	}{
		{"first pending", 3, 0, 1},
		{"last pending", 3, 0, 3},
		{"published later", 2, 2, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newEventQueue(DefaultEventQueueMax)
			publishN(q, tt.pending)
			r := startReaderSend(t, q, func(e *shimapi.Envelope) error {
				if e.Seq == tt.failAt {
					return errSend
				}
				return nil
			})
			publishN(q, tt.later)
			if got, want := r.nextSeqs(t, int(tt.failAt)-1), seqRange(1, tt.failAt-1); !equalSeqs(got, want) {
				t.Fatalf("delivered %v before the failure, want %v", got, want)
			}
			if err := r.result(t); !errors.Is(err, errSend) {
				t.Fatalf("stream returned %v, want %v", err, errSend)
			}
			// The event whose send failed is still there for the next reader.
			next := startReader(t, q)
			if got := next.nextSeqs(t, tt.pending+tt.later); !equalSeqs(got, seqRange(1, uint64(tt.pending+tt.later))) {
				t.Fatalf("next reader got %v", got)
			}
		})
	}
}

// envSummary is what the overflow tests check of an envelope.
type envSummary struct {
	seq     uint64
	exit    bool
	dropped uint64
}

// publishPattern publishes one event per letter: e an exit, n another one.
func publishPattern(q *eventQueue, pattern string) {
	for i, c := range pattern {
		if c == 'e' {
			q.publish(exitEv(i))
		} else {
			q.publish(nonExit(i))
		}
	}
}

// TestEventQueueOverflow fills a queue of 4. The oldest non-exit goes first;
// the envelope after the gap carries its size; a non-exit published onto a
// queue holding only exits is itself the oldest non-exit, and the next
// envelope published carries the count.
func TestEventQueueOverflow(t *testing.T) {
	tests := []struct {
		name    string
		publish string
		want    []envSummary
	}{
		{"at max", "nnnn", []envSummary{{1, false, 0}, {2, false, 0}, {3, false, 0}, {4, false, 0}}},
		{"one over", "nnnnn", []envSummary{{2, false, 1}, {3, false, 0}, {4, false, 0}, {5, false, 0}}},
		{"two over", "nnnnnn", []envSummary{{3, false, 2}, {4, false, 0}, {5, false, 0}, {6, false, 0}}},
		{"many over", "nnnnnnnnnn", []envSummary{{7, false, 6}, {8, false, 0}, {9, false, 0}, {10, false, 0}}},
		{"exits kept", "ennne", []envSummary{{1, true, 0}, {3, false, 1}, {4, false, 0}, {5, true, 0}}},
		{"gap before an exit", "eenen", []envSummary{{1, true, 0}, {2, true, 0}, {4, true, 1}, {5, false, 0}}},
		{"gap at the end", "eeenn", []envSummary{{1, true, 0}, {2, true, 0}, {3, true, 0}, {5, false, 1}}},
		{"full of exits grows", "eeeeee", []envSummary{
			{1, true, 0}, {2, true, 0}, {3, true, 0}, {4, true, 0}, {5, true, 0}, {6, true, 0}}},
		{"non-exits on exits", "eeeenn", []envSummary{
			{1, true, 0}, {2, true, 0}, {3, true, 0}, {4, true, 0}}},
		{"exit after dropped non-exits", "eeeenne", []envSummary{
			{1, true, 0}, {2, true, 0}, {3, true, 0}, {4, true, 0}, {7, true, 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newEventQueue(4)
			publishPattern(q, tt.publish)
			if got := q.len(); got != len(tt.want) {
				t.Fatalf("len = %d, want %d", got, len(tt.want))
			}
			r := startReader(t, q)
			for _, want := range tt.want {
				e := r.next(t)
				got := envSummary{e.Seq, e.GetExit() != nil, e.Dropped}
				if got != want {
					t.Errorf("envelope %+v, want %+v", got, want)
				}
			}
			r.expectNone(t)
		})
	}
}

// TestEventQueueOverflowInvariants publishes random mixes into a small
// queue and checks, for a reader that comes afterwards: every exit is
// there, each envelope's Dropped is the gap in sequence numbers before it,
// and the queue exceeds its bound only with exits.
func TestEventQueueOverflowInvariants(t *testing.T) {
	const max = 4
	for seed := range uint64(50) {
		rng := rand.New(rand.NewPCG(seed, 0))
		var pattern []byte
		for range rng.IntN(40) {
			if rng.IntN(4) == 0 {
				pattern = append(pattern, 'e')
			} else {
				pattern = append(pattern, 'n')
			}
		}
		q := newEventQueue(max)
		publishPattern(q, string(pattern))

		n := q.len()
		var exits int
		r := startReader(t, q)
		var prev uint64
		for range n {
			e := r.next(t)
			if e.Dropped != e.Seq-prev-1 {
				t.Errorf("pattern %s: seq %d carries dropped %d after seq %d, want %d",
					pattern, e.Seq, e.Dropped, prev, e.Seq-prev-1)
			}
			if e.GetExit() != nil {
				exits++
				if pattern[e.Seq-1] != 'e' {
					t.Errorf("pattern %s: seq %d is an exit, published as %c", pattern, e.Seq, pattern[e.Seq-1])
				}
			}
			prev = e.Seq
		}
		if want := bytes.Count(pattern, []byte("e")); exits != want {
			t.Errorf("pattern %s: %d exits delivered, want %d", pattern, exits, want)
		}
		if n > max && exits != n {
			t.Errorf("pattern %s: %d pending with only %d exits, bound %d", pattern, n, exits, max)
		}
		r.cancel()
		r.result(t)
	}
}

// TestEventQueueOverflowLiveReader checks that a reader already past a
// dropped event is not told it missed anything, while the next reader is.
func TestEventQueueOverflowLiveReader(t *testing.T) {
	q := newEventQueue(4)
	live := startReader(t, q)
	publishN(q, 4)
	if got := live.nextSeqs(t, 4); !equalSeqs(got, seqRange(1, 4)) {
		t.Fatalf("live reader got %v", got)
	}
	q.publish(nonExit(5)) // drops seq 1, which the live reader has
	if e := live.next(t); e.Seq != 5 || e.Dropped != 0 {
		t.Fatalf("live reader: seq %d dropped %d, want seq 5 dropped 0", e.Seq, e.Dropped)
	}
	next := startReader(t, q)
	if err := live.result(t); err != nil {
		t.Fatalf("live reader ended with %v", err)
	}
	want := []envSummary{{2, false, 1}, {3, false, 0}, {4, false, 0}, {5, false, 0}}
	for _, w := range want {
		e := next.next(t)
		if got := (envSummary{e.Seq, e.GetExit() != nil, e.Dropped}); got != w {
			t.Errorf("next reader: envelope %+v, want %+v", got, w)
		}
	}
}

// TestEventQueueOverflowWhileStreaming overflows a small queue from several
// publishers while a reader streams and reads every envelope's fields; the
// race detector checks that a queued envelope is never changed while sent.
func TestEventQueueOverflowWhileStreaming(t *testing.T) {
	q := newEventQueue(4)
	var (
		mu   sync.Mutex
		seqs []uint64 // guarded by mu
	)
	r := startReaderSend(t, q, func(e *shimapi.Envelope) error {
		_ = proto.Clone(e) // reads every field
		mu.Lock()
		seqs = append(seqs, e.Seq)
		mu.Unlock()
		return nil
	})
	const publishers, each = 4, 200
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				if i%10 == 0 {
					q.publish(exitEv(p*each + i))
				} else {
					q.publish(nonExit(i))
				}
			}
		})
	}
	wg.Wait()
	// Wait for the last event; it may have been dropped only if not an exit,
	// so wait for quiet instead of a count.
	for {
		n := len(r.envs)
		time.Sleep(quiet)
		if len(r.envs) == n {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("seq %d sent after %d", seqs[i], seqs[i-1])
		}
	}
}

// TestEventQueueExitsNeverDropped floods a small queue and checks that
// every exit reaches a reader that comes late.
func TestEventQueueExitsNeverDropped(t *testing.T) {
	q := newEventQueue(4)
	const exits, others = 20, 3
	for i := range exits {
		q.publish(exitEv(i))
		publishN(q, others)
	}
	q.publish(exitEv(exits))
	r := startReader(t, q)
	var dropped uint64
	for i := range exits + 1 {
		e := r.next(t)
		if e.GetExit() == nil || e.GetExit().Pid != uint32(i) {
			t.Fatalf("event %d: %v, want the exit of pid %d", i, e, i)
		}
		dropped += e.Dropped
	}
	r.expectNone(t)
	if dropped != exits*others {
		t.Errorf("dropped counts add up to %d, want %d", dropped, exits*others)
	}
}

// TestEventQueueDroppedCountsAddUp checks that a reader arriving after an
// overflow can tell how many events it lost: the Dropped counts of what it
// receives add up to the sequence numbers it never sees.
func TestEventQueueDroppedCountsAddUp(t *testing.T) {
	for _, n := range []int{5, 6, 8, 9, 10, 40} {
		q := newEventQueue(4)
		publishN(q, n)
		r := startReader(t, q)
		var reported uint64
		var seqs []uint64
		for range q.len() {
			e := r.next(t)
			seqs = append(seqs, e.Seq)
			reported += e.Dropped
		}
		missing := uint64(n - len(seqs))
		if reported != missing {
			t.Errorf("%d events into a queue of 4: received seqs %v reporting %d dropped, but %d were dropped",
				n, seqs, reported, missing)
		}
		r.cancel()
		r.result(t)
	}
}

// TestEventQueueOverflowInFlightReader is TestEventQueueOverflowLiveReader
// with the drops happening while the reader is still sending: events it has
// received, or is sending, must not be reported to it as dropped.
func TestEventQueueOverflowInFlightReader(t *testing.T) {
	q := newEventQueue(4)
	inSend, gate := make(chan struct{}), make(chan struct{})
	r := startReaderSend(t, q, func(e *shimapi.Envelope) error {
		if e.Seq == 2 {
			close(inSend)
			<-gate // hold the reader inside send(2)
		}
		return nil
	})
	publishN(q, 2)
	if e := r.next(t); e.Seq != 1 {
		t.Fatalf("seq %d, want 1", e.Seq)
	}
	select {
	case <-inSend:
	case <-time.After(eventTimeout):
		t.Fatal("seq 2 never sent")
	}
	// 5 and 6 drop 1 and 2, which this reader has.
	publishN(q, 4)
	close(gate)
	prev := uint64(1)
	for range 5 {
		e := r.next(t)
		if e.Dropped != e.Seq-prev-1 {
			t.Errorf("seq %d after seq %d carries dropped %d, want %d", e.Seq, prev, e.Dropped, e.Seq-prev-1)
		}
		prev = e.Seq
	}
}
