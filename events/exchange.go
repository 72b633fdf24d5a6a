package events

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/filters"
	"github.com/berthrt/berth/identifiers"
	"github.com/berthrt/berth/namespaces"
)

// Limits of the exchange.
const (
	// DefaultSubscriberBuffer is how many events a subscriber may fall
	// behind by before it is dropped; see WithSubscriberBuffer.
	DefaultSubscriberBuffer = 1024
	// MaxSubscribers is how many subscriptions one exchange serves at once.
	MaxSubscribers = 1024
	// MaxTopicLength is the longest topic, in bytes.
	MaxTopicLength = 256
	// MaxEventSize is the largest payload, encoded, in bytes: far below
	// ttrpc's 4 MiB message limit, far above any event berth sends.
	MaxEventSize = 256 << 10
	// HistoryLength and HistoryBytes bound the recent events an exchange
	// keeps for SubscribeSince: the oldest go first when either is
	// exceeded (HistoryBytes counts encoded payloads).
	HistoryLength = 4096
	HistoryBytes  = 8 << 20
)

// Exchange delivers every published event to the subscribers whose filters
// match it. The zero value is not usable; call NewExchange.
type Exchange struct {
	buffer int // capacity of each subscriber's buffer; fixed by NewExchange

	// mu guards subs, and is held for the whole of one delivery, so that
	// every subscriber sees the events it matches in one and the same
	// order. A delivery never blocks under mu: sends are non-blocking.
	mu   sync.Mutex
	subs map[*subscriber]struct{}

	history      []*Envelope // guarded by mu; the most recent events, oldest first
	historyBytes int         // guarded by mu; payload bytes in history
}

// subscriber is one subscription's state shared with publishers.
type subscriber struct {
	filter filters.Filter
	// buf holds the events matched but not yet handed to the subscriber.
	// It is sent on only under Exchange.mu, and closed, under mu, by
	// whoever removes the subscriber from Exchange.subs: a publisher that
	// finds it full, or the subscription's goroutine when ctx is done.
	buf chan *Envelope
}

// Option configures an Exchange.
type Option func(*Exchange)

// WithSubscriberBuffer sets how many matched events a subscriber may have
// waiting before it is dropped (at least 1; DefaultSubscriberBuffer
// without this option).
func WithSubscriberBuffer(n int) Option {
	return func(e *Exchange) { e.buffer = max(n, 1) }
}

// NewExchange returns an exchange with no subscribers.
func NewExchange(opts ...Option) *Exchange {
	e := &Exchange{buffer: DefaultSubscriberBuffer, subs: make(map[*subscriber]struct{})}
	for _, o := range opts {
		o(e)
	}
	return e
}

// Publish sends event on topic in the namespace of ctx, stamped with the
// current time. An event that is an *anypb.Any already (from the API) is
// sent as it is, not wrapped again. It fails with ErrFailedPrecondition
// when ctx has no namespace and with ErrInvalidArgument for a bad
// namespace, topic or event. It never waits for a subscriber.
func (e *Exchange) Publish(ctx context.Context, topic string, event proto.Message) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return fmt.Errorf("events: publish %q: %w", topic, err)
	}
	if err := validateTopic(topic); err != nil {
		return err
	}
	payload, err := encode(event)
	if err != nil {
		return fmt.Errorf("events: publish %q: %w", topic, err)
	}
	e.deliver(&Envelope{Timestamp: time.Now().UTC(), Namespace: ns, Topic: topic, Event: payload})
	return nil
}

// Forward sends an envelope that already has its namespace and timestamp,
// such as a task event relayed from a shim. The namespace of ctx plays no
// part. It fails with ErrInvalidArgument when a field is missing or
// invalid. The exchange delivers a copy: env stays the caller's.
func (e *Exchange) Forward(ctx context.Context, env *Envelope) error {
	if err := validateEnvelope(env); err != nil {
		return err
	}
	e.deliver(&Envelope{
		Timestamp: env.Timestamp,
		Namespace: env.Namespace,
		Topic:     env.Topic,
		Event:     proto.Clone(env.Event).(*anypb.Any),
	})
	return nil
}

// Subscribe returns the events published from now on that match any of
// filters (every event when there are none), in the order the exchange
// accepted them, and the channel that says the subscription has ended.
//
// As in containerd, the end is told on errc alone: it yields the error
// that ended the subscription, if any, and is then closed; evc is never
// closed. Select on both, and stop when errc yields (an error, or nil
// from the closed channel). Every event sent before the end has been
// received by then: evc is unbuffered.
//
// The subscription ends when ctx is done (without error when cancelled,
// with context.DeadlineExceeded past its deadline), at once when a filter
// does not parse (a *filters.SyntaxError), or when the subscriber falls
// more than its buffer behind (errdefs.ErrUnavailable, after the buffered
// events; see the package documentation). Its goroutine lives until ctx is
// done or, for a dropped subscriber, until the last buffered event has
// been received: cancel ctx when done with the subscription.
func (e *Exchange) Subscribe(ctx context.Context, filterStrings ...string) (evc <-chan *Envelope, errc <-chan error) {
	return e.SubscribeSince(ctx, time.Time{}, filterStrings...)
}

// SubscribeSince is Subscribe that first replays the matching events the
// exchange still holds (see HistoryLength) whose timestamp is after since,
// in the order it accepted them, and then continues with the live ones,
// without a gap or a repeat between the two. The zero since replays
// nothing. Live events that arrive during the replay wait in the
// subscriber's buffer, so a long replay read slowly can end in the same
// drop as any slow subscriber.
func (e *Exchange) SubscribeSince(ctx context.Context, since time.Time, filterStrings ...string) (evc <-chan *Envelope, errc <-chan error) {
	events := make(chan *Envelope) // unbuffered: an event is handed over when received
	errs := make(chan error, 1)    // room for the one error, so the end never blocks
	f, err := filters.ParseAll(filterStrings...)
	if err != nil {
		errs <- err
		close(errs)
		return events, errs
	}

	s := &subscriber{filter: f, buf: make(chan *Envelope, e.buffer)}
	var replay []*Envelope
	e.mu.Lock()
	n := len(e.subs)
	if n < MaxSubscribers {
		e.subs[s] = struct{}{}
		if !since.IsZero() {
			replay = e.replayLocked(since, f)
		}
	}
	e.mu.Unlock()
	if n >= MaxSubscribers {
		errs <- fmt.Errorf("events: subscribe: %d subscribers already: %w", n, errdefs.ErrUnavailable)
		close(errs)
		return events, errs
	}

	go e.run(ctx, s, replay, events, errs)
	return events, errs
}

// run is the one goroutine of a subscription: it hands over the replay,
// then the events of s.buf, one at a time, and ends the subscription. It
// returns when ctx is done, or once it has handed over every event
// buffered for a subscriber that a publisher dropped.
func (e *Exchange) run(ctx context.Context, s *subscriber, replay []*Envelope, events chan<- *Envelope, errs chan<- error) {
	if err := e.forward(ctx, s, replay, events); err != nil {
		errs <- err
	}
	close(errs)
}

func (e *Exchange) forward(ctx context.Context, s *subscriber, replay []*Envelope, events chan<- *Envelope) error {
	for _, env := range replay {
		select {
		case events <- env:
		case <-ctx.Done():
			return e.cancelled(ctx, s)
		}
	}
	for {
		select {
		case env, ok := <-s.buf:
			if !ok {
				return fmt.Errorf("events: subscriber fell more than %d events behind and was dropped: %w", e.buffer, errdefs.ErrUnavailable)
			}
			select {
			case events <- env:
			case <-ctx.Done():
				return e.cancelled(ctx, s)
			}
		case <-ctx.Done():
			return e.cancelled(ctx, s)
		}
	}
}

// cancelled removes s and returns the error its ended ctx calls for.
func (e *Exchange) cancelled(ctx context.Context, s *subscriber) error {
	e.remove(s)
	if err := ctx.Err(); !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// deliver records env in the history and offers it to every subscriber
// whose filter matches it. A subscriber with a full buffer is dropped:
// removed, and its buffer closed behind the events already in it.
func (e *Exchange) deliver(env *Envelope) {
	a := &envelopeAdaptor{env: env}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.history = append(e.history, env)
	e.historyBytes += len(env.Event.GetValue())
	for len(e.history) > HistoryLength || e.historyBytes > HistoryBytes {
		e.historyBytes -= len(e.history[0].Event.GetValue())
		e.history[0] = nil // let the collector have it before the array is reallocated
		e.history = e.history[1:]
	}
	for s := range e.subs {
		if !s.filter.Match(a) {
			continue
		}
		select {
		case s.buf <- env:
		default:
			e.removeLocked(s)
		}
	}
}

// replayLocked returns the events of the history after since that f
// matches.
func (e *Exchange) replayLocked(since time.Time, f filters.Filter) []*Envelope {
	var out []*Envelope
	for _, env := range e.history {
		if env.Timestamp.After(since) && f.Match(&envelopeAdaptor{env: env}) {
			out = append(out, env)
		}
	}
	return out
}

func (e *Exchange) remove(s *subscriber) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.removeLocked(s)
}

// removeLocked removes s if it is still subscribed and closes its buffer.
func (e *Exchange) removeLocked(s *subscriber) {
	if _, ok := e.subs[s]; ok {
		delete(e.subs, s)
		close(s.buf)
	}
}

// encode returns event as an Any: itself, copied, when it is one already.
func encode(event proto.Message) (*anypb.Any, error) {
	var payload *anypb.Any
	switch ev := event.(type) {
	case nil:
		return nil, fmt.Errorf("no event: %w", errdefs.ErrInvalidArgument)
	case *anypb.Any:
		if ev == nil || ev.GetTypeUrl() == "" {
			return nil, fmt.Errorf("no event type: %w", errdefs.ErrInvalidArgument)
		}
		payload = proto.Clone(ev).(*anypb.Any)
	default:
		if !event.ProtoReflect().IsValid() {
			return nil, fmt.Errorf("no event: %w", errdefs.ErrInvalidArgument)
		}
		if n := proto.Size(event); n > MaxEventSize {
			return nil, fmt.Errorf("event of %d bytes is larger than %d: %w", n, MaxEventSize, errdefs.ErrInvalidArgument)
		}
		var err error
		if payload, err = anypb.New(event); err != nil {
			return nil, fmt.Errorf("%v: %w", err, errdefs.ErrInvalidArgument)
		}
	}
	if n := len(payload.GetValue()); n > MaxEventSize {
		return nil, fmt.Errorf("event of %d bytes is larger than %d: %w", n, MaxEventSize, errdefs.ErrInvalidArgument)
	}
	return payload, nil
}

// validateTopic accepts a path of one or more identifiers ("/tasks/exit").
func validateTopic(topic string) error {
	switch {
	case len(topic) > MaxTopicLength:
		return fmt.Errorf("events: topic %.32q…: %d bytes is longer than %d: %w", topic, len(topic), MaxTopicLength, errdefs.ErrInvalidArgument)
	case !strings.HasPrefix(topic, "/"):
		return fmt.Errorf("events: topic %q: must start with '/': %w", topic, errdefs.ErrInvalidArgument)
	}
	for _, part := range strings.Split(topic[1:], "/") {
		if err := identifiers.Validate(part); err != nil {
			return fmt.Errorf("events: topic %q: %w", topic, err)
		}
	}
	return nil
}

func validateEnvelope(env *Envelope) error {
	if env == nil {
		return fmt.Errorf("events: forward: no envelope: %w", errdefs.ErrInvalidArgument)
	}
	if err := validateTopic(env.Topic); err != nil {
		return err
	}
	if err := identifiers.Validate(env.Namespace); err != nil {
		return fmt.Errorf("events: forward %q: namespace: %w", env.Topic, err)
	}
	switch {
	case env.Timestamp.IsZero():
		return fmt.Errorf("events: forward %q: no timestamp: %w", env.Topic, errdefs.ErrInvalidArgument)
	case env.Event == nil || env.Event.GetTypeUrl() == "":
		return fmt.Errorf("events: forward %q: no event type: %w", env.Topic, errdefs.ErrInvalidArgument)
	case len(env.Event.GetValue()) > MaxEventSize:
		return fmt.Errorf("events: forward %q: event of %d bytes is larger than %d: %w", env.Topic, len(env.Event.GetValue()), MaxEventSize, errdefs.ErrInvalidArgument)
	}
	return nil
}
