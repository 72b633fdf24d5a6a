package task

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthrt/berth/events/topics"
	"github.com/berthrt/berth/shimapi"
)

// DefaultEventQueueMax bounds the events a shim keeps unacknowledged.
const DefaultEventQueueMax = 4096

// eventQueue holds the task's events from publication until a reader
// acknowledges them, so that an event survives the reader going away (a
// daemon restart) and is delivered again to the next one.
//
// Policy when full: exit events are never dropped. Any other event is
// dropped, the oldest non-exit event first, and the next event delivered
// carries the count of events dropped before it. A shim owns one container,
// so the bound is only reached when a reader stays away during an exec
// storm.
type eventQueue struct {
	mu      sync.Mutex
	max     int
	seq     uint64              // guarded by mu: last sequence number given
	pending []*shimapi.Envelope // guarded by mu: unacknowledged, in seq order
	acked   uint64              // guarded by mu: highest sequence number acknowledged
	changed chan struct{}       // guarded by mu: closed and replaced on every change
	reader  chan struct{}       // guarded by mu: closed to end the current reader
}

func newEventQueue(max int) *eventQueue {
	return &eventQueue{max: max, changed: make(chan struct{})}
}

// publish queues an event. ev is one of the shimapi Task* event messages;
// its type decides the topic, so the two always match.
func (q *eventQueue) publish(ev proto.Message) {
	env := &shimapi.Envelope{Timestamp: timestamppb.New(time.Now())}
	switch e := ev.(type) {
	case *shimapi.TaskCreate:
		env.Topic, env.Event = topics.TaskCreate, &shimapi.Envelope_Create{Create: e}
	case *shimapi.TaskStart:
		env.Topic, env.Event = topics.TaskStart, &shimapi.Envelope_Start{Start: e}
	case *shimapi.TaskExit:
		env.Topic, env.Event = topics.TaskExit, &shimapi.Envelope_Exit{Exit: e}
	case *shimapi.TaskDelete:
		env.Topic, env.Event = topics.TaskDelete, &shimapi.Envelope_Delete{Delete: e}
	case *shimapi.TaskOOM:
		env.Topic, env.Event = topics.TaskOOM, &shimapi.Envelope_Oom{Oom: e}
	case *shimapi.TaskExecAdded:
		env.Topic, env.Event = topics.TaskExecAdded, &shimapi.Envelope_ExecAdded{ExecAdded: e}
	case *shimapi.TaskExecStarted:
		env.Topic, env.Event = topics.TaskExecStarted, &shimapi.Envelope_ExecStarted{ExecStarted: e}
	case *shimapi.TaskPaused:
		env.Topic, env.Event = topics.TaskPaused, &shimapi.Envelope_Paused{Paused: e}
	case *shimapi.TaskResumed:
		env.Topic, env.Event = topics.TaskResumed, &shimapi.Envelope_Resumed{Resumed: e}
	default:
		panic(fmt.Sprintf("task: publish of unknown event type %T", ev))
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.seq++
	env.Seq = q.seq
	if len(q.pending) >= q.max && !q.dropOldestLocked() && env.GetExit() == nil {
		// Only exits are pending: this event is the oldest non-exit.
		return
	}
	q.pending = append(q.pending, env)
	q.signalLocked()
}

// dropOldestLocked removes the oldest event that is not an exit. It reports
// false when all pending events are exits: none is dropped. Gaps are not
// recorded here: each reader derives them from sequence numbers.
func (q *eventQueue) dropOldestLocked() bool {
	for i, e := range q.pending {
		if e.GetExit() == nil {
			q.pending = append(q.pending[:i], q.pending[i+1:]...)
			return true
		}
	}
	return false
}

func (q *eventQueue) signalLocked() {
	close(q.changed)
	q.changed = make(chan struct{})
}

// ack forgets the events up to and including seq.
func (q *eventQueue) ack(seq uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	// Nothing beyond the last published event can be acknowledged.
	seq = min(seq, q.seq)
	if seq > q.acked {
		q.acked = seq
	}
	i := 0
	for i < len(q.pending) && q.pending[i].Seq <= seq {
		i++
	}
	q.pending = append(q.pending[:0:0], q.pending[i:]...)
}

// stream sends pending and future events to send until ctx ends, send
// fails, or a newer reader takes over. Events are sent in sequence order
// and each at most once per reader; unacknowledged ones are sent again to
// the next reader.
func (q *eventQueue) stream(ctx context.Context, send func(*shimapi.Envelope) error) error {
	q.mu.Lock()
	if q.reader != nil {
		close(q.reader)
	}
	mine := make(chan struct{})
	q.reader = mine
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		if q.reader == mine {
			q.reader = nil
		}
		q.mu.Unlock()
	}()

	q.mu.Lock()
	sent := q.acked // highest seq this reader has, or had acknowledged
	q.mu.Unlock()
	for {
		q.mu.Lock()
		var batch []*shimapi.Envelope
		for _, e := range q.pending {
			if e.Seq > sent {
				batch = append(batch, e)
			}
		}
		changed := q.changed
		q.mu.Unlock()
		for _, e := range batch {
			// The gap since the last event this reader has is what was
			// dropped in between; say so on a copy, since the queued
			// envelope is shared with later readers.
			if gap := e.Seq - sent - 1; gap > 0 {
				e = proto.Clone(e).(*shimapi.Envelope)
				e.Dropped = gap
			}
			if err := send(e); err != nil {
				return err
			}
			sent = e.Seq
		}
		select {
		case <-changed:
		case <-mine:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// len reports how many events wait for acknowledgement.
func (q *eventQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}
