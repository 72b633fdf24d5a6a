package cri

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/events"
	"github.com/berthrt/berth/events/topics"
	eventsv1 "github.com/berthrt/berth/proto/events/v1"
)

// Container events (GetContainerEvents) come from berth's event exchange:
// one subscription of the server (the pump, WatchEvents) to the k8s.io
// namespace's container and task events, each mapped to a CRI event type
// and sent with the pod's status and its containers' statuses as the CRI
// index holds them once the change is recorded there, then fanned out to
// every CRI subscriber.
//
//	/containers/create → CONTAINER_CREATED_EVENT
//	/tasks/start       → CONTAINER_STARTED_EVENT
//	/tasks/exit (init) → CONTAINER_STOPPED_EVENT
//	/containers/delete → CONTAINER_DELETED_EVENT
//
// A pod's sandbox has the same four, with the sandbox's id as the
// container id. The exchange publishes a change before the CRI call that
// made it has recorded it in the index (its record, exit code, reason),
// so the pump waits, bounded by settleTimeout, until the index reflects
// the change: the statuses the kubelet's evented PLEG caches are then
// never older than the event.
//
// A container that exited while berthd was down has its exit recorded
// by Load, before the pump subscribes; the pump announces each such exit
// once (CONTAINER_STOPPED_EVENT, at the exit's time), to the first
// subscriber when none is there yet, and drops the exchange's late copy.

const (
	// eventBuffer is how many events a CRI subscriber may be behind before
	// it is dropped with an error: the pump never waits for one.
	eventBuffer = 1024
	// maxEventSubscribers bounds the CRI's event streams at once.
	maxEventSubscribers = 64
	// settleTimeout bounds the pump's wait for the index to reflect an
	// event (a CRI call that is between the daemon's change and its
	// record).
	settleTimeout = 10 * time.Second
	// resubscribeDelay is the pause before the pump subscribes again after
	// its subscription ended.
	resubscribeDelay = 100 * time.Millisecond
)

// eventHub fans the pump's CRI events out to the subscribers.
type eventHub struct {
	mu   sync.Mutex
	subs map[*eventSub]struct{}
	// backlog holds the exits Load recorded when no one subscribed yet (a
	// restarted berthd serves before the kubelet subscribes again): the
	// first subscriber gets them, as a kubelet's evented PLEG would have
	// had them had berthd not been down. At most eventBuffer.
	backlog []*runtimeapi.ContainerEventResponse
}

// eventSub is one GetContainerEvents stream.
type eventSub struct {
	ch chan *runtimeapi.ContainerEventResponse
	// gone is closed, with err set before, when the hub dropped the
	// subscriber.
	gone chan struct{}
	err  error
}

func (h *eventHub) subscribe() (*eventSub, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs) >= maxEventSubscribers {
		return nil, fmt.Errorf("%d container event streams are open, the most there may be: %w", maxEventSubscribers, errdefs.ErrUnavailable)
	}
	if h.subs == nil {
		h.subs = map[*eventSub]struct{}{}
	}
	s := &eventSub{ch: make(chan *runtimeapi.ContainerEventResponse, eventBuffer), gone: make(chan struct{})}
	h.subs[s] = struct{}{}
	for _, ev := range h.backlog {
		s.ch <- ev // fits: the backlog is at most eventBuffer
	}
	h.backlog = nil
	return s, nil
}

func (h *eventHub) unsubscribe(s *eventSub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, s)
}

// dropLocked ends s with err.
func (h *eventHub) dropLocked(s *eventSub, err error) {
	delete(h.subs, s)
	s.err = err
	close(s.gone)
}

// publish hands ev to every subscriber without waiting: one whose buffer
// is full is dropped, so that it learns it lost events rather than
// missing one silently.
func (h *eventHub) publish(ev *runtimeapi.ContainerEventResponse) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.publishLocked(ev)
}

// publishOrKeep publishes evs, or keeps them for the first subscriber
// when there is none yet; it reports how many it had to leave out (past
// eventBuffer).
func (h *eventHub) publishOrKeep(evs []*runtimeapi.ContainerEventResponse) (lost int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs) > 0 {
		for _, ev := range evs {
			h.publishLocked(ev)
		}
		return 0
	}
	keep := min(len(evs), eventBuffer-len(h.backlog))
	h.backlog = append(h.backlog, evs[:keep]...)
	return len(evs) - keep
}

func (h *eventHub) publishLocked(ev *runtimeapi.ContainerEventResponse) {
	for s := range h.subs {
		select {
		case s.ch <- ev:
		default:
			h.dropLocked(s, fmt.Errorf("container event stream dropped: more than %d events not read", eventBuffer))
		}
	}
}

// dropAll ends every subscriber with err (the pump lost events).
func (h *eventHub) dropAll(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		h.dropLocked(s, err)
	}
}

// GetContainerEvents streams container and sandbox events until the
// client ends the stream. A client that falls eventBuffer events behind
// is ended with Unavailable: it must list again and subscribe anew. The
// stream's header is sent once the subscriber is registered: a client
// that waits for it (ClientStream.Header) gets every event from then on.
func (s *Server) GetContainerEvents(req *runtimeapi.GetEventsRequest, stream runtimeapi.RuntimeService_GetContainerEventsServer) error {
	sub, err := s.events.subscribe()
	if err != nil {
		return err
	}
	defer s.events.unsubscribe(sub)
	if err := stream.SendHeader(nil); err != nil {
		return err
	}
	ctx := stream.Context()
	// Sending is apart, so that a client that stops reading cannot keep
	// this call from ending when the hub drops it: the stream's end (this
	// call's return) unblocks the send.
	sendErr := make(chan error, 1)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case ev := <-sub.ch:
				if err := stream.Send(ev); err != nil {
					sendErr <- err
					return
				}
			case <-stop:
				return
			}
		}
	}()
	select {
	case <-ctx.Done():
		return nil
	case err := <-sendErr:
		return err
	case <-sub.gone:
		return status.Error(codes.Unavailable, sub.err.Error())
	}
}

// WatchEvents starts the pump: the server's subscription to berth's
// events, which feeds GetContainerEvents. It runs until Close.
func (s *Server) WatchEvents() {
	go s.pump()
}

// pumpFilters select the events the pump maps.
var pumpFilters = func() []string {
	var f []string
	for _, t := range []string{topics.ContainerCreate, topics.TaskStart, topics.TaskExit, topics.ContainerDelete} {
		f = append(f, fmt.Sprintf(`namespace==%q,topic==%q`, Namespace, t))
	}
	return f
}()

func (s *Server) pump() {
	ctx := nsContext(s.bgContext())
	p := &pumpState{
		sandboxes:  map[string]*sandbox{},
		containers: map[string]*container{},
		announced:  map[string]bool{},
	}
	s.announceLoadExits(ctx, p)
	for ctx.Err() == nil {
		evc, errc := s.client.Subscribe(ctx, pumpFilters...)
		// What the pump knows of the index now: a delete finds the object
		// even after it left the index.
		s.mu.Lock()
		for id, sb := range s.sandboxes {
			p.sandboxes[id] = sb
		}
		for id, c := range s.containers {
			p.containers[id] = c
		}
		s.mu.Unlock()
		err := s.pumpOne(ctx, p, evc, errc)
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("cri: container events: subscription ended; subscribing again", "error", err)
		s.events.dropAll(fmt.Errorf("container events were lost (%v): list again and subscribe anew", err))
		select {
		case <-time.After(resubscribeDelay):
		case <-ctx.Done():
		}
	}
}

// pumpOne maps the events of one subscription until it ends.
func (s *Server) pumpOne(ctx context.Context, p *pumpState, evc <-chan *events.Envelope, errc <-chan error) error {
	for {
		select {
		case env, ok := <-evc:
			if !ok {
				evc = nil
				continue
			}
			if ev := s.mapEvent(ctx, p, env); ev != nil {
				s.events.publish(ev)
			}
		case err, ok := <-errc:
			if !ok {
				err = errors.New("subscription closed")
			}
			return err
		}
	}
}

// pumpState is what the pump remembers of the objects it saw: a
// deleted object's pod, and the exits it announced for Load.
type pumpState struct {
	sandboxes  map[string]*sandbox
	containers map[string]*container
	// announced are the containers whose exit Load recorded and the pump
	// announced: the exchange's own /tasks/exit for one of them (its shim
	// forwards it once berthd reconnects, before or after the pump
	// subscribed) is not sent again.
	announced map[string]bool
}

// announceLoadExits sends a CONTAINER_STOPPED_EVENT for each container
// whose exit Load recorded (it exited while berthd was down), to the
// subscribers there are or else the first one to come.
func (s *Server) announceLoadExits(ctx context.Context, p *pumpState) {
	var evs []*runtimeapi.ContainerEventResponse
	for _, id := range s.loadExits {
		s.mu.Lock()
		c := s.containers[id]
		s.mu.Unlock()
		if c == nil {
			continue // removed meanwhile: its delete event follows
		}
		c.mu.Lock()
		podID, at := c.rec.SandboxID, c.rec.FinishedAt
		c.mu.Unlock()
		p.containers[id], p.announced[id] = c, true
		evs = append(evs, s.podEvent(ctx, p, id, podID, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, at))
	}
	if lost := s.events.publishOrKeep(evs); lost > 0 {
		s.log.Warn("cri: container events: exits recorded at start not sent", "count", lost)
	}
}

// mapEvent turns one berth event into a CRI event, nil when it is none
// (another client's container, an exec's exit).
func (s *Server) mapEvent(ctx context.Context, p *pumpState, env *events.Envelope) *runtimeapi.ContainerEventResponse {
	msg, err := env.Event.UnmarshalNew()
	if err != nil {
		s.log.Warn("cri: container events: undecodable event", "topic", env.Topic, "error", err)
		return nil
	}
	var id string
	var typ runtimeapi.ContainerEventType
	switch m := msg.(type) {
	case *eventsv1.ContainerCreate:
		id, typ = m.GetId(), runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT
	case *eventsv1.TaskStart:
		id, typ = m.GetContainerId(), runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT
	case *eventsv1.TaskExit:
		if m.GetExecId() != "" {
			return nil
		}
		if p.announced[m.GetContainerId()] {
			// A shim's exit held over berthd's restart, forwarded after
			// Load recorded and announced it.
			delete(p.announced, m.GetContainerId())
			return nil
		}
		id, typ = m.GetContainerId(), runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT
	case *eventsv1.ContainerDelete:
		id, typ = m.GetId(), runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT
	default:
		return nil
	}
	if typ == runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT {
		return s.deletedEvent(ctx, p, id, env.Timestamp)
	}
	if !s.isCRIObject(ctx, id) {
		return nil
	}
	settle, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	sb, c := s.waitIndexed(settle, id)
	switch {
	case c != nil:
		p.containers[id] = c
		if !s.waitRecorded(settle, c, typ) {
			s.log.Warn("cri: container events: the change was not recorded in time; sending the status as it is", "container", id, "event", typ)
		}
		return s.podEvent(ctx, p, id, c.rec.SandboxID, typ, env.Timestamp)
	case sb != nil:
		p.sandboxes[id] = sb
		return s.podEvent(ctx, p, id, id, typ, env.Timestamp)
	}
	return nil // made and undone by a CRI call that failed
}

// isCRIObject reports whether berth container id is a CRI sandbox or
// container (by its kind label); a container gone meanwhile is none.
func (s *Server) isCRIObject(ctx context.Context, id string) bool {
	s.mu.Lock()
	_, isSB := s.sandboxes[id]
	_, isC := s.containers[id]
	s.mu.Unlock()
	if isSB || isC {
		return true
	}
	ctr, err := s.client.LoadContainer(ctx, id)
	if err != nil {
		return false
	}
	labels, err := ctr.Labels(ctx)
	return err == nil && labels[KindLabel] != ""
}

// waitIndexed waits until id is in the index (a CRI call adds its object
// once the daemon made it), until ctx ends.
func (s *Server) waitIndexed(ctx context.Context, id string) (*sandbox, *container) {
	for {
		s.mu.Lock()
		sb, c := s.sandboxes[id], s.containers[id]
		s.mu.Unlock()
		if sb != nil || c != nil {
			return sb, c
		}
		if !sleepCtx(ctx, 5*time.Millisecond) {
			return nil, nil
		}
	}
}

// waitRecorded waits until c's record shows the change typ names: a start
// recorded (the lifecycle lock is free), an exit recorded.
func (s *Server) waitRecorded(ctx context.Context, c *container, typ runtimeapi.ContainerEventType) bool {
	switch typ {
	case runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT:
		select {
		case <-c.exited:
			return true
		case <-ctx.Done():
			return false
		}
	case runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT:
		for {
			c.mu.Lock()
			state := containerState(c.rec)
			c.mu.Unlock()
			if state != runtimeapi.ContainerState_CONTAINER_UNKNOWN && state != runtimeapi.ContainerState_CONTAINER_CREATED {
				return true
			}
			if !sleepCtx(ctx, 5*time.Millisecond) {
				return false
			}
		}
	}
	return true
}

// sleepCtx sleeps d, false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// deletedEvent is the event of a deleted sandbox or container the pump
// saw, nil for another.
func (s *Server) deletedEvent(ctx context.Context, p *pumpState, id string, at time.Time) *runtimeapi.ContainerEventResponse {
	if c, ok := p.containers[id]; ok {
		delete(p.containers, id)
		return s.podEvent(ctx, p, id, c.rec.SandboxID, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, at)
	}
	if _, ok := p.sandboxes[id]; ok {
		ev := s.podEvent(ctx, p, id, id, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, at)
		delete(p.sandboxes, id)
		return ev
	}
	return nil
}

// podEvent is the CRI event typ of object id in pod podID, with the pod's
// status and its containers' statuses now.
func (s *Server) podEvent(ctx context.Context, p *pumpState, id, podID string, typ runtimeapi.ContainerEventType, at time.Time) *runtimeapi.ContainerEventResponse {
	ev := &runtimeapi.ContainerEventResponse{ContainerId: id, ContainerEventType: typ, CreatedAt: at.UnixNano()}
	s.mu.Lock()
	sb := s.sandboxes[podID]
	s.mu.Unlock()
	if sb == nil {
		sb = p.sandboxes[podID]
	}
	if sb == nil {
		return ev // a pod the index never held
	}
	ev.PodSandboxStatus, _ = s.sandboxStatus(ctx, sb)
	for _, c := range s.containersOf(podID) {
		if typ == runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT && c.rec.ID == id {
			continue // deleted, still leaving the index
		}
		ev.ContainersStatuses = append(ev.ContainersStatuses, containerStatus(c))
	}
	return ev
}
