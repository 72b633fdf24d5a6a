package client

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/namespaces"
)

func TestNewNoDaemon(t *testing.T) {
	address := filepath.Join(t.TempDir(), "berth.sock")
	_, err := New(address, WithTimeout(time.Second))
	if !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("err = %v, want class ErrUnavailable", err)
	}
	if msg := err.Error(); !strings.Contains(msg, address) || !strings.Contains(msg, "not running") {
		t.Errorf("message %q should name %s and say the daemon is not running", msg, address)
	}
}

func TestOptions(t *testing.T) {
	if _, err := New("/nonexistent.sock", WithTimeout(0)); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("zero timeout: %v", err)
	}
	c, _ := connect(t)
	if c.DefaultNamespace() != namespaces.Default {
		t.Errorf("default namespace %q, want %q", c.DefaultNamespace(), namespaces.Default)
	}
}

func TestNamespaceOnEveryCall(t *testing.T) {
	c, f := connect(t, WithDefaultNamespace("ci"))
	ctx := context.Background()
	tests := []struct {
		name string
		ctx  context.Context
		want string
	}{
		{"default", ctx, "ci"},
		{"from the context", namespaces.WithNamespace(ctx, "builds"), "builds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := c.Containers(tt.ctx); err != nil {
				t.Fatal(err)
			}
			if got := f.containers.namespace(); got != tt.want {
				t.Errorf("daemon saw namespace %q, want %q", got, tt.want)
			}
		})
	}
}

func TestErrorClassesRoundTrip(t *testing.T) {
	c, _ := connect(t)
	ctx := context.Background()
	_, err := c.LoadContainer(ctx, "nope")
	if !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("LoadContainer: %v, want ErrNotFound", err)
	}
	if err.Error() != `container "nope": not found` {
		t.Errorf("message %q, want the daemon's", err.Error())
	}
	if _, err := c.NewContainer(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.NewContainer(ctx, "c1"); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("second NewContainer: %v, want ErrAlreadyExists", err)
	}
	if _, err := c.TaskService().List(ctx, nil); !errors.Is(err, errdefs.ErrNotImplemented) {
		t.Errorf("raw service call: %v, want ErrNotImplemented", err)
	}
}

func TestVersionServerHealth(t *testing.T) {
	c, _ := connect(t)
	ctx := context.Background()
	v, err := c.Version(ctx)
	if err != nil || v != (Version{Version: "0.1.0", Revision: "abc", GoVersion: "go1.26"}) {
		t.Errorf("Version = %+v, %v", v, err)
	}
	s, err := c.Server(ctx)
	if err != nil || s.UUID != "u-1" || s.Pid != 7 || !s.StartedAt.Equal(time.Unix(1700000000, 0)) || s.Root != "/var/lib/berth" {
		t.Errorf("Server = %+v, %v", s, err)
	}
	ok, err := c.IsServing(ctx)
	if err != nil || !ok {
		t.Errorf("IsServing = %v, %v; want true while restoring", ok, err)
	}
}

func TestExitStatus(t *testing.T) {
	at := time.Unix(1700000000, 0)
	s := ExitStatus{code: 3, exitedAt: at}
	if code, when, err := s.Result(); code != 3 || !when.Equal(at) || err != nil {
		t.Errorf("Result = %d %v %v", code, when, err)
	}
	if s.ExitCode() != 3 || !s.ExitTime().Equal(at) || s.Error() != nil {
		t.Errorf("accessors disagree with Result: %+v", s)
	}
	e := exitError(errdefs.ErrUnavailable)
	if e.ExitCode() != UnknownExitStatus || !e.ExitTime().IsZero() || !errors.Is(e.Error(), errdefs.ErrUnavailable) {
		t.Errorf("exitError = %+v", e)
	}
}

// TestConnectionLost checks that calls on a connection that has ended, and
// waits it ends, fail with ErrUnavailable rather than a bare ttrpc error.
func TestConnectionLost(t *testing.T) {
	c, f := connect(t)
	ctx := context.Background()
	f.tasks.add("t1", "", nil, 42)
	task, err := (&container{client: c, id: "t1"}).Task(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	exitc, err := task.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case st := <-exitc:
		if !errors.Is(st.Error(), errdefs.ErrUnavailable) {
			t.Errorf("wait across Close: %v, want ErrUnavailable", st.Error())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("wait did not end with the connection")
	}
	if _, err := c.LoadContainer(ctx, "c1"); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("call after Close: %v, want ErrUnavailable", err)
	}
}
