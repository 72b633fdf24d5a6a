package events

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/events/topics"
	"github.com/berthrt/berth/filters"
	"github.com/berthrt/berth/namespaces"
	eventsv1 "github.com/berthrt/berth/proto/events/v1"
	"github.com/berthrt/berth/shimapi"
)

// wait bounds every receive in these tests, so that a bug fails the test
// instead of hanging it.
const wait = 5 * time.Second

func nsContext(t *testing.T, ns string) context.Context {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return namespaces.WithNamespace(ctx, ns)
}

func exit(id string, status uint32) *shimapi.TaskExit {
	return &shimapi.TaskExit{ContainerId: id, Pid: 42, ExitStatus: status, ExitedAt: timestamppb.New(time.Unix(1700000000, 0))}
}

// receive reads n envelopes from evc, failing the test on an early end.
func receive(t *testing.T, evc <-chan *Envelope, errc <-chan error, n int) []*Envelope {
	t.Helper()
	var got []*Envelope
	for len(got) < n {
		select {
		case env := <-evc:
			got = append(got, env)
		case err := <-errc:
			t.Fatalf("subscription ended after %d of %d events: %v", len(got), n, err)
		case <-time.After(wait):
			t.Fatalf("received %d of %d events in %v", len(got), n, wait)
		}
	}
	return got
}

// end waits for the subscription's end, allowing no event before it, and
// returns its error.
func end(t *testing.T, evc <-chan *Envelope, errc <-chan error) error {
	t.Helper()
	select {
	case env := <-evc:
		t.Fatalf("event %s, want the end", env.Topic)
	case err := <-errc:
		if _, ok := <-errc; ok {
			t.Fatal("errors yielded twice")
		}
		return err
	case <-time.After(wait):
		t.Fatalf("subscription did not end in %v", wait)
	}
	return nil
}

// containerIDs returns the container_id of each envelope's payload.
func containerIDs(envs []*Envelope) []string {
	ids := make([]string, len(envs))
	for i, env := range envs {
		ids[i], _ = env.Field([]string{"event", "container_id"})
	}
	return ids
}

func TestPublishValidation(t *testing.T) {
	ex := NewExchange()
	ctx := nsContext(t, "default")
	for _, tc := range []struct {
		name  string
		ctx   context.Context
		topic string
		event proto.Message
		is    error
	}{
		{"no namespace", context.Background(), topics.TaskExit, exit("c", 0), errdefs.ErrFailedPrecondition},
		{"bad namespace", namespaces.WithNamespace(ctx, "../x"), topics.TaskExit, exit("c", 0), errdefs.ErrInvalidArgument},
		{"empty topic", ctx, "", exit("c", 0), errdefs.ErrInvalidArgument},
		{"relative topic", ctx, "tasks/exit", exit("c", 0), errdefs.ErrInvalidArgument},
		{"root topic", ctx, "/", exit("c", 0), errdefs.ErrInvalidArgument},
		{"empty component", ctx, "/tasks//exit", exit("c", 0), errdefs.ErrInvalidArgument},
		{"trailing slash", ctx, "/tasks/", exit("c", 0), errdefs.ErrInvalidArgument},
		{"dot dot", ctx, "/tasks/../exit", exit("c", 0), errdefs.ErrInvalidArgument},
		{"space", ctx, "/tasks/ex it", exit("c", 0), errdefs.ErrInvalidArgument},
		{"long topic", ctx, strings.Repeat("/abcdefg", 33), exit("c", 0), errdefs.ErrInvalidArgument},
		{"no event", ctx, topics.TaskExit, nil, errdefs.ErrInvalidArgument},
		{"huge event", ctx, topics.TaskExit, exit(strings.Repeat("x", MaxEventSize), 0), errdefs.ErrInvalidArgument},
	} {
		if err := ex.Publish(tc.ctx, tc.topic, tc.event); !errors.Is(err, tc.is) {
			t.Errorf("%s: Publish = %v, want %v", tc.name, err, tc.is)
		}
	}
	if err := ex.Publish(ctx, "/a/b.c/d-e_f", exit("c", 0)); err != nil {
		t.Errorf("Publish with a valid topic: %v", err)
	}
}

func TestForwardValidation(t *testing.T) {
	ex := NewExchange()
	payload, err := anypb.New(exit("c", 0))
	if err != nil {
		t.Fatal(err)
	}
	good := Envelope{Timestamp: time.Now(), Namespace: "default", Topic: topics.TaskExit, Event: payload}
	for _, tc := range []struct {
		name   string
		modify func(*Envelope)
	}{
		{"no namespace", func(e *Envelope) { e.Namespace = "" }},
		{"bad namespace", func(e *Envelope) { e.Namespace = "a/b" }},
		{"bad topic", func(e *Envelope) { e.Topic = "exit" }},
		{"no timestamp", func(e *Envelope) { e.Timestamp = time.Time{} }},
		{"no event", func(e *Envelope) { e.Event = nil }},
		{"no event type", func(e *Envelope) { e.Event = &anypb.Any{Value: payload.Value} }},
		{"huge event", func(e *Envelope) { e.Event = &anypb.Any{TypeUrl: payload.TypeUrl, Value: make([]byte, MaxEventSize+1)} }},
	} {
		env := good
		tc.modify(&env)
		if err := ex.Forward(context.Background(), &env); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: Forward = %v, want invalid argument", tc.name, err)
		}
	}
	if err := ex.Forward(context.Background(), nil); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Forward(nil) = %v, want invalid argument", err)
	}

	evc, errc := ex.Subscribe(nsContext(t, "other"))
	env := good
	if err := ex.Forward(context.Background(), &env); err != nil {
		t.Fatal(err)
	}
	env.Event.TypeUrl = "changed/after.forward" // the exchange delivers a copy
	got := receive(t, evc, errc, 1)[0]
	if !got.Timestamp.Equal(good.Timestamp) || got.Namespace != "default" || got.Topic != topics.TaskExit ||
		got.Event.TypeUrl != "type.googleapis.com/berth.services.events.v1.TaskExit" {
		t.Errorf("forwarded %+v, received %+v", good, got)
	}
}

func TestOrdering(t *testing.T) {
	const n = 2000
	ex := NewExchange(WithSubscriberBuffer(n)) // room for all: this test is not about slowness
	ctx := nsContext(t, "default")
	evc, errc := ex.Subscribe(ctx)
	for i := range n {
		if err := ex.Publish(ctx, topics.TaskExit, exit(fmt.Sprint(i), 0)); err != nil {
			t.Fatal(err)
		}
	}
	for i, id := range containerIDs(receive(t, evc, errc, n)) {
		if id != fmt.Sprint(i) {
			t.Fatalf("event %d is container %s", i, id)
		}
	}
}

// TestOneOrder checks that concurrent publishers give every subscriber
// the same order, and each publisher's own events in its order.
func TestOneOrder(t *testing.T) {
	const publishers, each = 4, 200
	ex := NewExchange(WithSubscriberBuffer(publishers * each))
	ctx := nsContext(t, "default")
	evc1, errc1 := ex.Subscribe(ctx)
	evc2, errc2 := ex.Subscribe(ctx, `topic~=^/tasks/`)

	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				if err := ex.Publish(ctx, topics.TaskStart, exit(fmt.Sprintf("%d-%d", p, i), 0)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	var got1, got2 []string
	wg.Go(func() { got1 = containerIDs(receive(t, evc1, errc1, publishers*each)) })
	wg.Go(func() { got2 = containerIDs(receive(t, evc2, errc2, publishers*each)) })
	wg.Wait()

	if strings.Join(got1, " ") != strings.Join(got2, " ") {
		t.Fatal("two subscribers saw different orders")
	}
	next := make([]int, publishers)
	for _, id := range got1 {
		var p, i int
		fmt.Sscanf(id, "%d-%d", &p, &i)
		if i != next[p] {
			t.Fatalf("publisher %d: event %d came before %d", p, i, next[p])
		}
		next[p]++
	}
}

func TestFiltering(t *testing.T) {
	ex := NewExchange()
	ctx := nsContext(t, "default")
	publish := func() {
		t.Helper()
		for _, ev := range []struct {
			topic string
			event proto.Message
		}{
			{topics.TaskCreate, &shimapi.TaskCreate{ContainerId: "web", Pid: 7}},
			{topics.TaskExit, exit("web", 0)},
			{topics.TaskExit, exit("db", 137)},
			{topics.TaskOOM, &shimapi.TaskOOM{ContainerId: "db"}},
			{"/containers/update", &eventsv1.ContainerUpdate{Id: "db", Labels: map[string]string{"io.berth.role": "store"}}},
		} {
			if err := ex.Publish(ctx, ev.topic, ev.event); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		filters []string
		want    string // topic:container of each event received
	}{
		{nil, "/tasks/create:web /tasks/exit:web /tasks/exit:db /tasks/oom:db /containers/update:"},
		{[]string{""}, "/tasks/create:web /tasks/exit:web /tasks/exit:db /tasks/oom:db /containers/update:"},
		{[]string{`topic=="/tasks/exit"`}, "/tasks/exit:web /tasks/exit:db"},
		{[]string{`topic==/tasks/exit,event.exit_status!=0`}, "/tasks/exit:db"},
		{[]string{`event.exit_status==0`}, "/tasks/exit:web"},
		{[]string{`event.containerId==db`}, "/tasks/exit:db /tasks/oom:db"},
		{[]string{`event.exited_at.seconds==1700000000,event.container_id==web`}, "/tasks/exit:web"},
		{[]string{`topic==/tasks/oom`, `event.pid==7`}, "/tasks/create:web /tasks/oom:db"},
		{[]string{`topic~=^/containers/,event.labels.io.berth.role==store`}, "/containers/update:"},
		{[]string{`event.labels."io.berth.role"`}, "/containers/update:"},
		{[]string{`event.bundle`}, "/tasks/create:web"},
		{[]string{`event.nothing`}, ""},
		{[]string{`event`}, ""},
	} {
		sub, cancel := context.WithCancel(ctx)
		evc, errc := ex.Subscribe(sub, tc.filters...)
		publish()
		var got []string
		for _, env := range receive(t, evc, errc, len(strings.Fields(tc.want))) {
			id, _ := env.Field([]string{"event", "container_id"})
			got = append(got, env.Topic+":"+id)
		}
		select {
		case env := <-evc:
			got = append(got, env.Topic+"(one too many)")
		case <-time.After(20 * time.Millisecond):
		}
		cancel()
		if strings.Join(got, " ") != tc.want {
			t.Errorf("%q: received %q, want %q", tc.filters, strings.Join(got, " "), tc.want)
		}
	}
}

func TestNamespaceIsolation(t *testing.T) {
	ex := NewExchange()
	a, b := nsContext(t, "a"), nsContext(t, "b")
	evca, errca := ex.Subscribe(a, "namespace==a")
	evcb, errcb := ex.Subscribe(b, `namespace=="b"`)
	evcAll, errcAll := ex.Subscribe(a)
	for i := range 10 {
		ctx := a
		if i%2 == 1 {
			ctx = b
		}
		if err := ex.Publish(ctx, topics.TaskStart, exit(fmt.Sprint(i), 0)); err != nil {
			t.Fatal(err)
		}
	}
	for _, env := range receive(t, evca, errca, 5) {
		if env.Namespace != "a" {
			t.Errorf("subscriber of a received an event of %s", env.Namespace)
		}
	}
	for _, env := range receive(t, evcb, errcb, 5) {
		if env.Namespace != "b" {
			t.Errorf("subscriber of b received an event of %s", env.Namespace)
		}
	}
	if got := containerIDs(receive(t, evcAll, errcAll, 10)); strings.Join(got, "") != "0123456789" {
		t.Errorf("subscriber without filter received %v", got)
	}
}

func TestSlowSubscriber(t *testing.T) {
	const buffer, n = 4, 20
	ex := NewExchange(WithSubscriberBuffer(buffer))
	ctx := nsContext(t, "default")
	slowc, slowErrc := ex.Subscribe(ctx)
	fastc, fastErrc := ex.Subscribe(ctx)

	var fast []string
	for i := range n {
		// Publish must return although slow reads nothing.
		if err := ex.Publish(ctx, topics.TaskExit, exit(fmt.Sprint(i), 0)); err != nil {
			t.Fatal(err)
		}
		// fast takes each event before the next is published: it never
		// falls behind, however late its goroutine runs.
		fast = append(fast, containerIDs(receive(t, fastc, fastErrc, 1))...)
	}
	if len(fast) != n || fast[n-1] != fmt.Sprint(n-1) {
		t.Errorf("fast subscriber received %v", fast)
	}

	// slow receives a gap-free prefix: what its buffer held, and perhaps
	// one more its goroutine held in hand, then the error.
	var got []string
	var err error
	for err == nil {
		select {
		case env := <-slowc:
			got = append(got, containerIDs([]*Envelope{env})[0])
			continue
		case err = <-slowErrc:
		case <-time.After(wait):
			t.Fatal("slow subscriber not ended")
		}
		break
	}
	if len(got) < buffer || len(got) > buffer+1 {
		t.Errorf("slow subscriber received %d events, want %d or %d", len(got), buffer, buffer+1)
	}
	for i, id := range got {
		if id != fmt.Sprint(i) {
			t.Errorf("slow subscriber's event %d is %s", i, id)
		}
	}
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "dropped") {
		t.Errorf("slow subscriber ended with %v, want unavailable", err)
	}
	if _, ok := <-slowErrc; ok {
		t.Error("errors not closed after the error")
	}
	if subscribers(ex) != 1 {
		t.Errorf("%d subscribers after drop, want 1", subscribers(ex))
	}
}

func TestPublishAny(t *testing.T) {
	ex := NewExchange()
	ctx := nsContext(t, "default")
	evc, errc := ex.Subscribe(ctx, "event.container_id==c")
	payload, err := anypb.New(exit("c", 0))
	if err != nil {
		t.Fatal(err)
	}
	if err := ex.Publish(ctx, topics.TaskExit, payload); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, evc, errc, 1)[0]; got.Event.TypeUrl != payload.TypeUrl {
		t.Errorf("an Any published arrives as %s, want it as it was", got.Event.TypeUrl)
	}
	if err := ex.Publish(ctx, topics.TaskExit, &anypb.Any{}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Publish of an Any without type = %v, want invalid argument", err)
	}
	if err := ex.Publish(ctx, topics.TaskExit, (*shimapi.TaskExit)(nil)); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Publish of a nil event = %v, want invalid argument", err)
	}
}

func TestSubscribeSince(t *testing.T) {
	ex := NewExchange()
	ctx := nsContext(t, "default")
	forward := func(id string, ts time.Time) {
		t.Helper()
		payload, err := anypb.New(exit(id, 0))
		if err != nil {
			t.Fatal(err)
		}
		if err := ex.Forward(ctx, &Envelope{Timestamp: ts, Namespace: "default", Topic: topics.TaskExit, Event: payload}); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Unix(1700000000, 0)
	for i := range 5 {
		forward(fmt.Sprint(i), t0.Add(time.Duration(i)*time.Second))
	}
	// Events after t0+2s that the filter matches, then the live ones.
	evc, errc := ex.SubscribeSince(ctx, t0.Add(2*time.Second), "event.container_id!=4")
	forward("5", t0)
	forward("4", t0)
	forward("6", t0)
	if got := containerIDs(receive(t, evc, errc, 3)); strings.Join(got, " ") != "3 5 6" {
		t.Errorf("replay then live = %v, want [3 5 6]", got)
	}
	// Without since, nothing is replayed.
	evc, errc = ex.Subscribe(ctx)
	forward("7", t0)
	if got := containerIDs(receive(t, evc, errc, 1)); got[0] != "7" {
		t.Errorf("Subscribe without since received %v first", got)
	}
}

func TestHistoryBound(t *testing.T) {
	ex := NewExchange(WithSubscriberBuffer(1))
	ctx := nsContext(t, "default")
	for i := range HistoryLength + 10 {
		if err := ex.Publish(ctx, topics.TaskExit, exit(fmt.Sprint(i), 0)); err != nil {
			t.Fatal(err)
		}
	}
	ex.mu.Lock()
	n, first := len(ex.history), ex.history[0]
	ex.mu.Unlock()
	if id, _ := first.Field([]string{"event", "container_id"}); n != HistoryLength || id != "10" {
		t.Errorf("history holds %d events from %s, want %d from 10", n, id, HistoryLength)
	}
	big := exit(strings.Repeat("x", MaxEventSize-100), 0)
	for range HistoryBytes/MaxEventSize + 5 {
		if err := ex.Publish(ctx, topics.TaskExit, big); err != nil {
			t.Fatal(err)
		}
	}
	ex.mu.Lock()
	bytes := ex.historyBytes
	ex.mu.Unlock()
	if bytes > HistoryBytes {
		t.Errorf("history holds %d bytes, more than %d", bytes, HistoryBytes)
	}
}

func TestSubscribeBadFilter(t *testing.T) {
	ex := NewExchange()
	evc, errc := ex.Subscribe(context.Background(), "topic==/a", "labels.a==")
	err := end(t, evc, errc)
	var se *filters.SyntaxError
	if !errors.As(err, &se) || !errdefs.IsInvalidArgument(err) {
		t.Errorf("Subscribe with a bad filter ended with %v, want a syntax error", err)
	}
	if subscribers(ex) != 0 {
		t.Errorf("%d subscribers, want 0", subscribers(ex))
	}
}

func TestTooManySubscribers(t *testing.T) {
	ex := NewExchange(WithSubscriberBuffer(1))
	ctx := nsContext(t, "default")
	for range MaxSubscribers {
		ex.Subscribe(ctx)
	}
	evc, errc := ex.Subscribe(ctx)
	if err := end(t, evc, errc); !errdefs.IsUnavailable(err) {
		t.Errorf("subscriber %d ended with %v, want unavailable", MaxSubscribers+1, err)
	}
}

func TestUnsubscribeOnCancel(t *testing.T) {
	ex := NewExchange()
	pub := nsContext(t, "default")
	before := runtime.NumGoroutine()

	var ends []func() error
	for i := range 50 {
		ctx, cancel := context.WithCancel(pub)
		evc, errc := ex.Subscribe(ctx)
		if err := ex.Publish(pub, topics.TaskExit, exit(fmt.Sprint(i), 0)); err != nil {
			t.Fatal(err)
		}
		// Half take nothing: cancel must end a goroutine blocked on
		// handing over an event, and leave the buffer to the collector.
		if i%2 == 0 {
			receive(t, evc, errc, 1)
		}
		cancel()
		// The goroutine may still hand over the event it held as it
		// sees the cancel: take events until the end.
		ends = append(ends, func() error {
			for {
				select {
				case <-evc:
				case err := <-errc:
					return err
				case <-time.After(wait):
					t.Fatal("cancelled subscription did not end")
				}
			}
		})
	}
	for _, e := range ends {
		if err := e(); err != nil {
			t.Errorf("cancelled subscription ended with %v, want none", err)
		}
	}
	if n := subscribers(ex); n != 0 {
		t.Errorf("%d subscribers after cancel, want 0", n)
	}
	deadline := time.Now().Add(wait)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines, %d before subscribing", n, before)
	}
	if err := ex.Publish(pub, topics.TaskExit, exit("after", 0)); err != nil {
		t.Errorf("Publish after every subscriber left: %v", err)
	}
}

func TestDeadline(t *testing.T) {
	ex := NewExchange()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	evc, errc := ex.Subscribe(ctx)
	if err := end(t, evc, errc); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("subscription past its deadline ended with %v", err)
	}
}

func TestEnvelopeField(t *testing.T) {
	payload := func(m proto.Message) *anypb.Any {
		a, err := anypb.New(m)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	state := &Envelope{Namespace: "ns", Topic: "/t", Event: payload(&shimapi.StateResponse{Id: "c", Status: shimapi.Status_STATUS_STOPPED})}
	number := &Envelope{Event: payload(structpb.NewNumberValue(1.5))}
	unknown := &Envelope{Event: &anypb.Any{TypeUrl: "example.com/not.Registered", Value: []byte{8, 1}}}
	broken := &Envelope{Event: &anypb.Any{TypeUrl: "type.googleapis.com/berth.services.events.v1.TaskExit", Value: []byte{0xff}}}
	for _, tc := range []struct {
		env     *Envelope
		path    string
		value   string
		present bool
	}{
		{state, "topic", "/t", true},
		{state, "namespace", "ns", true},
		{state, "topic.x", "", false},
		{state, "event.status", "STATUS_STOPPED", true},
		{state, "event.exit_status", "0", true},
		{state, "event.exec_id", "", true},
		{state, "event.exited_at", "", false},
		{state, "event.exited_at.seconds", "", false},
		{state, "event.stdio", "", false},
		{state, "event.id.x", "", false},
		{number, "event.number_value", "1.5", true},
		{number, "event.numberValue", "1.5", true},
		{number, "event.string_value", "", false},
		{unknown, "event.a", "", false},
		{broken, "event.container_id", "", false},
		{&Envelope{}, "event.a", "", false},
	} {
		value, present := tc.env.Field(strings.Split(tc.path, "."))
		if value != tc.value || present != tc.present {
			t.Errorf("%s = %q, %v; want %q, %v", tc.path, value, present, tc.value, tc.present)
		}
	}
}

func subscribers(ex *Exchange) int {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	return len(ex.subs)
}
