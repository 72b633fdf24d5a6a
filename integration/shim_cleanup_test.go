package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/mount"
	"github.com/berthrt/berth/oci"
	"github.com/berthrt/berth/shimapi"
)

// countingRuntime returns a runtime wrapper around runc that appends
// each call's arguments to a file, and a function that counts the calls
// of one verb.
func countingRuntime(t *testing.T) (wrapper string, calls func(verb string) int) {
	t.Helper()
	runc, err := exec.LookPath("runc")
	testutil.Require(t, err == nil, "runc not found in PATH (run make deps)")
	dir := t.TempDir()
	log := filepath.Join(dir, "calls")
	wrapper = filepath.Join(dir, "counting-runtime")
	script := "#!/bin/sh\necho \"$@\" >> " + log + "\nexec " + runc + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return wrapper, func(verb string) int {
		data, err := os.ReadFile(log)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		n := 0
		for _, l := range strings.Split(string(data), "\n") {
			for _, f := range strings.Fields(l) {
				if f == verb {
					n++
					break
				}
			}
		}
		return n
	}
}

// runtimeKnows says whether runc (under the shim's runtime root) still
// has the container.
func (s *shim) runtimeKnows() bool {
	return exec.Command("runc", "--root", s.runtimeRoot, "state", s.id).Run() == nil
}

// shutdownNow asks the shim to shut down at once. The reply may be lost:
// ttrpc's server closes a connection it last saw idle, and a call that
// arrived since counts only once its connection's loop comes round, so
// the shim's own Shutdown can close the connection that carries its
// answer (berthd ignores Shutdown's outcome and watches the shim's exit
// instead; so do the tests, after this).
func (s *shim) shutdownNow() error {
	_, err := s.task.Shutdown(ctx(s.t), &shimapi.ShutdownRequest{Id: s.id, Now: true})
	if errors.Is(err, ttrpc.ErrClosed) {
		return nil
	}
	return err
}

// createRunning creates and starts the init in one call, with
// cleanup_on_exit as asked.
func (s *shim) createRunning(cleanupOnExit bool) {
	s.t.Helper()
	_, err := s.task.Create(ctx(s.t), &shimapi.CreateRequest{
		Id: s.id, Rootfs: s.overlay(), Stdio: &shimapi.Stdio{}, Start: true, CleanupOnExit: cleanupOnExit,
	})
	if err != nil {
		s.t.Fatalf("create: %v", err)
	}
}

// TestShimCleanupOnExit: with cleanup_on_exit the runtime's container is
// deleted and the rootfs unmounted once the init exited, before any
// Delete; the stopped task answers as documented; Delete still reports
// the exit status, once, and runc delete ran once in all.
func TestShimCleanupOnExit(t *testing.T) {
	wrapper, calls := countingRuntime(t)
	s := startShim(t, "eager", []oci.SpecOpts{oci.WithProcessArgs("sh", "-c", "exit 3")}, withRuntime(wrapper))
	s.createRunning(true)
	if code := s.wait(""); code != 3 {
		t.Fatalf("wait: exit %d, want 3", code)
	}
	rootfs := filepath.Join(s.bundle, "rootfs")
	eventually(t, 30*time.Second, "the container released after its exit", func() bool {
		return !s.runtimeKnows() && !mounted(t, rootfs)
	})
	if st := s.status(""); st != shimapi.Status_STATUS_STOPPED {
		t.Errorf("state after the release: %v, want stopped", st)
	}
	if _, err := shimapi.ReadExitFile(s.bundle); err != nil {
		t.Errorf("exit file before Delete: %v", err)
	}
	pids, err := s.task.Pids(ctx(t), &shimapi.PidsRequest{Id: s.id})
	if err != nil || len(pids.Processes) != 0 {
		t.Errorf("pids after the release: %v, %v; want none", pids, err)
	}
	if _, err := s.task.Stats(ctx(t), &shimapi.StatsRequest{Id: s.id}); !errors.Is(errdefs.FromTTRPC(err), errdefs.ErrNotFound) {
		t.Errorf("stats after the release: %v, want NotFound", err)
	}
	if _, err := s.task.Kill(ctx(t), &shimapi.KillRequest{Id: s.id, Signal: uint32(syscall.SIGKILL)}); !errors.Is(errdefs.FromTTRPC(err), errdefs.ErrNotFound) {
		t.Errorf("kill after the release: %v, want NotFound", err)
	}
	resp, err := s.task.Delete(ctx(t), &shimapi.DeleteRequest{Id: s.id})
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	if resp.ExitStatus != 3 {
		t.Errorf("delete: exit %d, want 3", resp.ExitStatus)
	}
	if _, err := shimapi.ReadExitFile(s.bundle); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("exit file after Delete: %v, want gone", err)
	}
	if _, err := s.task.Delete(ctx(t), &shimapi.DeleteRequest{Id: s.id}); !errors.Is(errdefs.FromTTRPC(err), errdefs.ErrNotFound) {
		t.Errorf("second delete: %v, want NotFound", err)
	}
	if n := calls("delete"); n != 1 {
		t.Errorf("runc delete ran %d times, want once", n)
	}
}

// TestShimCleanupOnExitDeleteRace deletes the task as soon as Wait
// returns, while the release after the exit starts or runs: Delete
// reports the exit, the container is gone and unmounted when it returns,
// and runc delete ran once, never beside itself.
func TestShimCleanupOnExitDeleteRace(t *testing.T) {
	for i := 0; i < 4; i++ {
		wrapper, calls := countingRuntime(t)
		s := startShim(t, "eager-race", []oci.SpecOpts{oci.WithProcessArgs("sh", "-c", "exit 5")}, withRuntime(wrapper))
		s.createRunning(true)
		if code := s.wait(""); code != 5 {
			t.Fatalf("wait: exit %d, want 5", code)
		}
		resp, err := s.task.Delete(ctx(t), &shimapi.DeleteRequest{Id: s.id})
		if err != nil {
			t.Fatalf("round %d: delete: %v", i, err)
		}
		if resp.ExitStatus != 5 {
			t.Errorf("round %d: delete: exit %d, want 5", i, resp.ExitStatus)
		}
		// The rootfs is unmounted when Delete returns; the runtime's
		// delete may still run (deferred: see TestShimDeferredRuntimeDelete).
		if mounted(t, filepath.Join(s.bundle, "rootfs")) {
			t.Errorf("round %d: the rootfs is mounted after Delete", i)
		}
		// A second release, if one came after Delete, would be
		// under way or done by the time the shim has exited: the shim
		// exits only once its runtime calls are reaped.
		pid := s.shimPid()
		if err := s.shutdownNow(); err != nil {
			t.Fatalf("round %d: shutdown: %v", i, err)
		}
		eventually(t, 30*time.Second, "the shim's exit", func() bool { return !alive(pid) })
		if s.runtimeKnows() {
			t.Errorf("round %d: the runtime still has the container after the shim's exit", i)
		}
		if n := calls("delete"); n != 1 {
			t.Errorf("round %d: runc delete ran %d times, want once", i, n)
		}
	}
}

// gatedRuntime returns a runtime wrapper around runc whose delete waits
// until the returned function opens its gate, and a function that counts
// the calls of a verb.
func gatedRuntime(t *testing.T) (wrapper string, open func(), calls func(verb string) int) {
	t.Helper()
	inner, calls := countingRuntime(t)
	wrapper, open = testutil.GatedRuntime(t, inner, "delete")
	return wrapper, open, calls
}

// TestShimDeferredRuntimeDelete: with cleanup_on_exit, a container with a
// PID namespace of its own and no poststop hook is released by unmounting
// its rootfs; the runtime's delete finishes in the background. Delete
// answers while that delete is held back, and the shim, shut down, exits
// only once it ran: the runtime's container is never left behind.
func TestShimDeferredRuntimeDelete(t *testing.T) {
	wrapper, open, calls := gatedRuntime(t)
	s := startShim(t, "deferred", []oci.SpecOpts{oci.WithProcessArgs("sh", "-c", "exit 7")}, withRuntime(wrapper))
	s.createRunning(true)
	if code := s.wait(""); code != 7 {
		t.Fatalf("wait: exit %d, want 7", code)
	}
	rootfs := filepath.Join(s.bundle, "rootfs")
	resp, err := s.task.Delete(ctx(t), &shimapi.DeleteRequest{Id: s.id})
	if err != nil || resp.ExitStatus != 7 {
		t.Fatalf("delete: %v, %v; want exit 7", resp, err)
	}
	if mounted(t, rootfs) {
		t.Error("the rootfs is mounted after Delete")
	}
	if !s.runtimeKnows() {
		t.Fatal("the runtime's delete ran although its gate was closed: the delete was not deferred")
	}
	pid := s.shimPid()
	if err := s.shutdownNow(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	// The shim waits for the held-back delete instead of ending it.
	time.Sleep(300 * time.Millisecond)
	if !alive(pid) {
		t.Fatal("the shim exited before its deferred runtime delete ran")
	}
	open()
	eventually(t, 30*time.Second, "the shim's exit", func() bool { return !alive(pid) })
	if s.runtimeKnows() {
		t.Error("the runtime still has the container after the shim's exit")
	}
	if n := calls("delete"); n != 1 {
		t.Errorf("runc delete ran %d times, want once", n)
	}
}

// TestShimDeferredRuntimeDeleteStartsAtShutdown: the deferred runtime
// delete waits for the shim's shutdown, which comes after the client's
// Delete, so that its runc does not compete for the CPU with the exit's
// way to the client; without a shutdown it starts after its bound (1 s)
// all the same, with the shim still serving.
func TestShimDeferredRuntimeDeleteStartsAtShutdown(t *testing.T) {
	// task's runtimeDeleteDelay: the deferred delete starts then at the
	// latest, shutdown or not.
	const deferredDeleteDelay = time.Second
	for _, shutdown := range []bool{true, false} {
		t.Run(fmt.Sprintf("shutdown=%v", shutdown), func(t *testing.T) {
			wrapper, calls := countingRuntime(t)
			s := startShim(t, "deferred-start", []oci.SpecOpts{oci.WithProcessArgs("true")}, withRuntime(wrapper))
			// The release, and with it the deferred delete's bound, starts
			// after this; a delete seen later than the bound after it says
			// nothing of the shutdown.
			began := time.Now()
			s.createRunning(true)
			if code := s.wait(""); code != 0 {
				t.Fatalf("wait: exit %d, want 0", code)
			}
			if _, err := s.task.Delete(ctx(t), &shimapi.DeleteRequest{Id: s.id}); err != nil {
				t.Fatalf("delete: %v", err)
			}
			if mounted(t, filepath.Join(s.bundle, "rootfs")) {
				t.Error("the rootfs is mounted after Delete")
			}
			pid := s.shimPid()
			if shutdown {
				time.Sleep(300 * time.Millisecond)
				n, knows := calls("delete"), s.runtimeKnows()
				switch elapsed := time.Since(began); {
				case elapsed >= deferredDeleteDelay:
					t.Logf("no check of the delete before the shutdown: %v passed since the release, more than the bound it may wait (%v)", elapsed, deferredDeleteDelay)
				case n != 0 || !knows:
					t.Fatalf("runc delete ran %d times before the shutdown, %v after the release (the runtime knows the container: %v), want none", n, elapsed, knows)
				}
				if err := s.shutdownNow(); err != nil {
					t.Fatalf("shutdown: %v", err)
				}
				eventually(t, 30*time.Second, "the shim's exit", func() bool { return !alive(pid) })
			} else {
				eventually(t, 30*time.Second, "the runtime's delete without a shutdown", func() bool { return !s.runtimeKnows() })
				if !alive(pid) {
					t.Fatal("the shim exited without a shutdown")
				}
			}
			if s.runtimeKnows() {
				t.Error("the runtime still has the container")
			}
			if n := calls("delete"); n != 1 {
				t.Errorf("runc delete ran %d times, want once", n)
			}
		})
	}
}

// TestShimRuntimeDeleteNotDeferred: a container with a poststop hook, or
// one in a PID namespace it shares, is deleted by the runtime before
// Delete answers, also with cleanup_on_exit: the runtime runs the hook
// (which the OCI spec wants done when delete returns), or kills what is
// left in the shared namespace.
func TestShimRuntimeDeleteNotDeferred(t *testing.T) {
	testutil.RequireRoot(t, "runc", "busybox")
	hook := func(_ context.Context, sp *specs.Spec) error {
		if sp.Hooks == nil {
			sp.Hooks = &specs.Hooks{}
		}
		sp.Hooks.Poststop = append(sp.Hooks.Poststop, specs.Hook{Path: "/bin/true"})
		return nil
	}
	for _, c := range []struct {
		name string
		opt  oci.SpecOpts
	}{
		{"poststop-hook", hook},
		{"host-pid", oci.WithHostNamespace(specs.PIDNamespace)},
	} {
		t.Run(c.name, func(t *testing.T) {
			wrapper, calls := countingRuntime(t)
			s := startShim(t, "undeferred-"+c.name, []oci.SpecOpts{oci.WithProcessArgs("true"), c.opt}, withRuntime(wrapper))
			s.createRunning(true)
			if code := s.wait(""); code != 0 {
				t.Fatalf("wait: exit %d, want 0", code)
			}
			if _, err := s.task.Delete(ctx(t), &shimapi.DeleteRequest{Id: s.id}); err != nil {
				t.Fatalf("delete: %v", err)
			}
			if s.runtimeKnows() || mounted(t, filepath.Join(s.bundle, "rootfs")) {
				t.Error("the container is left after Delete")
			}
			if n := calls("delete"); n != 1 {
				t.Errorf("runc delete ran %d times, want once", n)
			}
		})
	}
}

// TestShimWithoutCleanupOnExit: without the option the stopped container
// stays with the runtime and its rootfs stays mounted until Delete.
func TestShimWithoutCleanupOnExit(t *testing.T) {
	s := startShim(t, "lazy", []oci.SpecOpts{oci.WithProcessArgs("true")})
	s.createRunning(false)
	if code := s.wait(""); code != 0 {
		t.Fatalf("wait: exit %d, want 0", code)
	}
	rootfs := filepath.Join(s.bundle, "rootfs")
	// The exit's publication (after which a release would start) comes
	// before Wait returns; the State round trip gives it time to show.
	for i := 0; i < 3; i++ {
		if st := s.status(""); st != shimapi.Status_STATUS_STOPPED {
			t.Fatalf("state: %v, want stopped", st)
		}
		if !s.runtimeKnows() || !mounted(t, rootfs) {
			t.Fatalf("without cleanup_on_exit the container was released before Delete (runc knows it: %v, rootfs mounted: %v)", s.runtimeKnows(), mounted(t, rootfs))
		}
	}
	if _, err := s.task.Delete(ctx(t), &shimapi.DeleteRequest{Id: s.id}); err != nil {
		t.Fatal(err)
	}
	if s.runtimeKnows() || mounted(t, rootfs) {
		t.Error("the container is left after Delete")
	}
}

// alive says whether pid is a process that has not exited (a zombie has).
func alive(pid int) bool {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(data), ')')
	return i < 0 || i+2 >= len(data) || data[i+2] != 'Z'
}

// rootfsSuperOptions returns the super options of the overlay mounted at
// the shim's rootfs, "" when none is.
func rootfsSuperOptions(t *testing.T, s *shim) string {
	t.Helper()
	target := filepath.Join(s.bundle, "rootfs")
	for _, m := range mountInfo(t) {
		if m.target == target {
			return m.superOptions
		}
	}
	return ""
}

// TestShimVolatileRootfs: a cleanup_on_exit task's writable overlay is
// mounted with overlayfs's volatile option (no sync of the upper
// filesystem: nobody keeps that rootfs), and once released the work
// folder carries no volatile mark, so the same snapshot mounts again; a
// task without the option keeps a plain overlay.
func TestShimVolatileRootfs(t *testing.T) {
	for _, cleanup := range []bool{true, false} {
		t.Run(fmt.Sprintf("cleanup_on_exit=%v", cleanup), func(t *testing.T) {
			s := startShim(t, "volatile", []oci.SpecOpts{oci.WithProcessArgs("sleep", "2")})
			s.createRunning(cleanup)
			opts := rootfsSuperOptions(t, s)
			if opts == "" {
				t.Fatal("no overlay at the rootfs of the running task")
			}
			if volatile := strings.Contains(opts, "volatile"); volatile != cleanup {
				t.Fatalf("rootfs overlay options %q: volatile %v, want %v", opts, volatile, cleanup)
			}
			if code := s.wait(""); code != 0 {
				t.Fatalf("wait: exit %d, want 0", code)
			}
			if _, err := s.task.Delete(ctx(t), &shimapi.DeleteRequest{Id: s.id}); err != nil {
				t.Fatalf("delete: %v", err)
			}
			work := filepath.Join(s.bundle, "..", "work")
			if _, err := os.Stat(filepath.Join(work, "work", "incompat", "volatile")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("overlayfs's volatile mark after the release: %v, want none", err)
			}
			// The same upper and work folders mount again.
			ms := s.overlay()
			dir := t.TempDir()
			if err := mount.All([]mount.Mount{{Type: ms[0].Type, Source: ms[0].Source, Options: ms[0].Options}}, dir); err != nil {
				t.Fatalf("mount the task's overlay again: %v", err)
			}
			if err := mount.UnmountAll(dir, 0); err != nil {
				t.Fatal(err)
			}
		})
	}
}
