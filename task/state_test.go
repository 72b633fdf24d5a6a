package task

import (
	"errors"
	"strings"
	"testing"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/shimapi"
)

var (
	allStatuses = []Status{Created, Running, Paused, Stopped, Deleted}
	allOps      = []Op{OpStart, OpPause, OpResume, OpKill, OpExit, OpDelete}
)

// allowed is the state machine written out independently of transitions:
// the state each allowed (state, op) pair leads to.
var allowed = map[Status]map[Op]Status{
	Created: {OpStart: Running, OpKill: Created, OpExit: Stopped, OpDelete: Deleted},
	Running: {OpPause: Paused, OpKill: Running, OpExit: Stopped},
	Paused:  {OpResume: Running, OpKill: Paused, OpExit: Stopped},
	Stopped: {OpDelete: Deleted},
	Deleted: {},
}

func TestNextEveryPair(t *testing.T) {
	for _, process := range []string{"init", "exec-1"} {
		for _, from := range allStatuses {
			for _, op := range allOps {
				t.Run(process+"/"+from.String()+"/"+string(op), func(t *testing.T) {
					to, err := next(process, from, op)
					if want, ok := allowed[from][op]; ok {
						if err != nil {
							t.Fatalf("next = %v, want %s", err, want)
						}
						if to != want {
							t.Fatalf("next = %s, want %s", to, want)
						}
						return
					}
					checkTransitionError(t, err, process, from, op)
					if to != from {
						t.Errorf("state after a refused %s = %s, want it unchanged (%s)", op, to, from)
					}
				})
			}
		}
	}
}

// checkTransitionError checks that err is the *TransitionError of a refused
// op, of the right class, and that its message names process, op and state.
func checkTransitionError(t *testing.T, err error, process string, from Status, op Op) {
	t.Helper()
	var te *TransitionError
	if !errors.As(err, &te) {
		t.Fatalf("err = %v (%T), want a *TransitionError", err, err)
	}
	if te.Process != process || te.From != from || te.Op != op {
		t.Errorf("TransitionError = %+v, want process %q from %s op %s", te, process, from, op)
	}
	wantClass, otherClass := errdefs.ErrFailedPrecondition, errdefs.ErrNotFound
	if from == Deleted || (from == Stopped && op == OpKill) {
		wantClass, otherClass = errdefs.ErrNotFound, errdefs.ErrFailedPrecondition
	}
	if !errors.Is(err, wantClass) {
		t.Errorf("err %q is not of class %v", err, wantClass)
	}
	if errors.Is(err, otherClass) {
		t.Errorf("err %q is also of class %v", err, otherClass)
	}
	msg := err.Error()
	for _, word := range []string{process, string(op), from.String()} {
		if !strings.Contains(msg, word) {
			t.Errorf("message %q does not name %q", msg, word)
		}
	}
}

// TestTransitionErrorWrapped checks that the class survives wrapping, as it
// does when a service method adds context.
func TestTransitionErrorWrapped(t *testing.T) {
	_, err := next("init", Stopped, OpKill)
	wrapped := errors.Join(errors.New("kill"), err)
	var te *TransitionError
	if !errors.As(wrapped, &te) || !errdefs.IsNotFound(wrapped) {
		t.Fatalf("wrapped %v lost its type or class", wrapped)
	}
}

// TestTransitionsTableMatches guards against a state or op added to the
// machine without a test row.
func TestTransitionsTableMatches(t *testing.T) {
	if len(transitions) != len(allStatuses) {
		t.Errorf("transitions has %d states, tests know %d", len(transitions), len(allStatuses))
	}
	for from, ops := range transitions {
		for op, to := range ops {
			if want, ok := allowed[from][op]; !ok || want != to {
				t.Errorf("transitions allows %s --%s--> %s, tests expect %v (allowed %v)", from, op, to, want, ok)
			}
		}
	}
}

func TestStatusString(t *testing.T) {
	tests := []struct {
		s    Status
		want string
		api  shimapi.Status
	}{
		{Created, "created", shimapi.Status_STATUS_CREATED},
		{Running, "running", shimapi.Status_STATUS_RUNNING},
		{Paused, "paused", shimapi.Status_STATUS_PAUSED},
		{Stopped, "stopped", shimapi.Status_STATUS_STOPPED},
		{Deleted, "deleted", shimapi.Status_STATUS_UNKNOWN},
		{Status(42), "status(42)", shimapi.Status_STATUS_UNKNOWN},
	}
	for _, tt := range tests {
		if got := tt.s.String(); got != tt.want {
			t.Errorf("Status(%d).String() = %q, want %q", int(tt.s), got, tt.want)
		}
		if got := tt.s.API(); got != tt.api {
			t.Errorf("%s.API() = %v, want %v", tt.want, got, tt.api)
		}
	}
}
