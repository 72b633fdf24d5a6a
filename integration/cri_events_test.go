package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// criEvents is one GetContainerEvents stream, read into a channel.
type criEvents struct {
	ch   chan *runtimeapi.ContainerEventResponse
	errc chan error
}

func (e *criEnv) subscribeEvents(t *testing.T) *criEvents {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := e.rt.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// The call returns before the server has registered the stream; its
	// header comes once it has, and every event after it reaches us.
	header := make(chan error, 1)
	go func() {
		_, err := stream.Header()
		header <- err
	}()
	select {
	case err := <-header:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		cancel()
		t.Fatal("no header on the event stream within a minute: the server did not say it listens")
	}
	ev := &criEvents{ch: make(chan *runtimeapi.ContainerEventResponse, 1000), errc: make(chan error, 1)}
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				ev.errc <- err
				return
			}
			ev.ch <- r
		}
	}()
	return ev
}

// next returns the next event of the stream, failing after a minute.
func (ev *criEvents) next(t *testing.T) *runtimeapi.ContainerEventResponse {
	t.Helper()
	select {
	case r := <-ev.ch:
		return r
	case err := <-ev.errc:
		t.Fatalf("event stream ended: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("no event within a minute")
	}
	return nil
}

// TestCRIContainerEvents follows a pod and a container through their
// lives on two event streams: each sees created, started, stopped and
// deleted, for the sandbox and the container, in order, with the pod's
// status and its containers' statuses as they are after the change.
func TestCRIContainerEvents(t *testing.T) {
	e := newCRIEnv(t)
	subs := []*criEvents{e.subscribeEvents(t), e.subscribeEvents(t)}
	ctx := e.ctx(t)
	podCfg := e.podConfig(t, "events", false)
	pod := e.runPod(t, podCfg)
	ctr := e.startContainer(t, pod, podCfg, "sleeper", "sh", "-c", "trap 'exit 3' TERM; echo trapped; sleep 1000 & wait")

	type step struct {
		id  string
		typ runtimeapi.ContainerEventType
		// check looks at the statuses the event carries.
		check func(r *runtimeapi.ContainerEventResponse) error
	}
	order := map[runtimeapi.ContainerState]int{
		runtimeapi.ContainerState_CONTAINER_CREATED: 1, runtimeapi.ContainerState_CONTAINER_RUNNING: 2, runtimeapi.ContainerState_CONTAINER_EXITED: 3,
	}
	ctrState := func(want runtimeapi.ContainerState) func(*runtimeapi.ContainerEventResponse) error {
		return func(r *runtimeapi.ContainerEventResponse) error {
			if len(r.ContainersStatuses) != 1 || r.ContainersStatuses[0].Id != ctr {
				return fmt.Errorf("container statuses %v: want the one container", r.ContainersStatuses)
			}
			// The statuses are those of when the event is sent: never
			// older than the event, maybe newer.
			st := r.ContainersStatuses[0]
			if order[st.State] < order[want] {
				return fmt.Errorf("container state %v: want %v or later", st.State, want)
			}
			if st.State == runtimeapi.ContainerState_CONTAINER_EXITED && st.ExitCode != 3 {
				return fmt.Errorf("container exit code %d: want 3", st.ExitCode)
			}
			return nil
		}
	}
	// podState checks a pod event: the pod's state, and at most
	// maxContainers container statuses. Like a container's, a pod's
	// statuses are those of when the event is sent, so the pod's first
	// events may already list the container created right after them
	// (on a quiet machine they do).
	podState := func(want runtimeapi.PodSandboxState, maxContainers int) func(*runtimeapi.ContainerEventResponse) error {
		return func(r *runtimeapi.ContainerEventResponse) error {
			if r.PodSandboxStatus.GetState() != want {
				return fmt.Errorf("pod state %v: want %v", r.PodSandboxStatus.GetState(), want)
			}
			if len(r.ContainersStatuses) > maxContainers {
				return fmt.Errorf("%d container statuses: want at most %d", len(r.ContainersStatuses), maxContainers)
			}
			for _, st := range r.ContainersStatuses {
				if st.Id != ctr {
					return fmt.Errorf("container status of %s: only %s exists", st.Id, ctr)
				}
			}
			return nil
		}
	}
	// expect reads the next len(want) events of every stream and checks
	// them against want, in order.
	expect := func(want []step) {
		t.Helper()
		for i, sub := range subs {
			var got []string
			for _, w := range want {
				r := sub.next(t)
				got = append(got, fmt.Sprintf("%.8s %v", r.ContainerId, r.ContainerEventType))
				if r.ContainerId != w.id || r.ContainerEventType != w.typ {
					t.Fatalf("stream %d: events %v: want %.8s %v next", i, got, w.id, w.typ)
				}
				if r.PodSandboxStatus.GetId() != pod || r.PodSandboxStatus.GetMetadata().GetUid() != podCfg.Metadata.Uid {
					t.Errorf("stream %d: %s: pod status %v: want pod %s", i, got[len(got)-1], r.PodSandboxStatus, pod)
				}
				if r.CreatedAt == 0 {
					t.Errorf("stream %d: %s: no time", i, got[len(got)-1])
				}
				if err := w.check(r); err != nil {
					t.Errorf("stream %d: %s: %v", i, got[len(got)-1], err)
				}
			}
		}
	}
	// Each change's events are read before the next change: an event's
	// statuses are those of when it is sent, so an event still on its way
	// when the next call ran would show that call's outcome (a pod stopped
	// before the container's delete event went out shows as not ready; a
	// container removed before its create event went out is no longer
	// there to be sent).
	expect([]step{
		{pod, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, podState(runtimeapi.PodSandboxState_SANDBOX_READY, 1)},
		{pod, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, podState(runtimeapi.PodSandboxState_SANDBOX_READY, 1)},
		{ctr, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, ctrState(runtimeapi.ContainerState_CONTAINER_CREATED)},
		{ctr, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, ctrState(runtimeapi.ContainerState_CONTAINER_RUNNING)},
	})
	// A TERM that comes before the trap is set is lost on the container's
	// init, and the stop ends in a KILL after its timeout: stop it once
	// it says the trap is set.
	logPath := filepath.Join(podCfg.LogDirectory, "sleeper.log")
	eventually(t, time.Minute, "the sleeper's trap set", func() bool {
		if _, err := os.Stat(logPath); err != nil {
			return false
		}
		return slices.ContainsFunc(readCRILog(t, logPath), func(l criLogLine) bool { return l.content == "trapped" })
	})
	if _, err := e.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ctr, Timeout: 10}); err != nil {
		t.Fatal(err)
	}
	expect([]step{
		{ctr, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, ctrState(runtimeapi.ContainerState_CONTAINER_EXITED)},
	})
	if _, err := e.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: ctr}); err != nil {
		t.Fatal(err)
	}
	expect([]step{
		{ctr, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, podState(runtimeapi.PodSandboxState_SANDBOX_READY, 0)},
	})
	if _, err := e.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatal(err)
	}
	expect([]step{
		{pod, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, podState(runtimeapi.PodSandboxState_SANDBOX_NOTREADY, 0)},
		{pod, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, podState(runtimeapi.PodSandboxState_SANDBOX_NOTREADY, 0)},
	})
	// Nothing else came (a sandbox's task delete, an exec's exit).
	time.Sleep(200 * time.Millisecond)
	for i, sub := range subs {
		if n := len(sub.ch); n != 0 {
			r := <-sub.ch
			t.Errorf("stream %d: %d more events, the first %.8s %v", i, n, r.ContainerId, r.ContainerEventType)
		}
	}
	for i, sub := range subs {
		select {
		case err := <-sub.errc:
			t.Errorf("stream %d ended: %v", i, err)
		default:
		}
	}
	e.checkNothingLeft(t)
}
