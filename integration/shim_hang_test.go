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

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/internal/proc"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/shimapi"
)

// hangingRuntime writes a runtime that is runc except that its create
// hangs: it writes its pid to a file and becomes `sleep`. Cleanup kills
// the sleep if it is still there.
func hangingRuntime(t *testing.T) (path, pidFile string) {
	t.Helper()
	runc, err := exec.LookPath("runc")
	testutil.Require(t, err == nil, "runc not found in PATH")
	dir := t.TempDir()
	path, pidFile = filepath.Join(dir, "hang-runc"), filepath.Join(dir, "create.pid")
	// The pid file appears whole (written aside, then renamed): the
	// tests read it as soon as it exists.
	script := fmt.Sprintf("#!/bin/sh\nfor a in \"$@\"; do\n  if [ \"$a\" = create ]; then echo $$ > %[1]s.tmp; mv %[1]s.tmp %[1]s; exec sleep 600; fi\ndone\nexec %[2]s \"$@\"\n", pidFile, runc)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if data, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 1 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	return path, pidFile
}

// hungCreate makes a container "stuck" whose runtime hangs in create and
// creates its task with createCtx in the background; it returns once the
// runtime hangs, with the channel that gets NewTask's error and the
// runtime's pid file.
func hungCreate(t *testing.T, d *daemon, c *client.Client, ctx, createCtx context.Context) (client.Container, <-chan error, string) {
	t.Helper()
	runtime, pidFile := hangingRuntime(t)
	stuck := newClientContainer(t, c, ctx, "stuck", []string{"true"}, client.WithRuntime(runtime, nil))
	stuckErr := make(chan error, 1)
	go func() {
		task, err := stuck.NewTask(createCtx, d.creator(nil, nil, nil))
		if err == nil {
			task.Delete(context.WithoutCancel(ctx), client.WithProcessKill)
		}
		stuckErr <- err
	}()
	eventually(t, time.Minute, "the runtime's create to hang", func() bool {
		_, err := os.Stat(pidFile)
		return err == nil
	})
	return stuck, stuckErr, pidFile
}

// TestShimHungCreate: a container whose runtime hangs in create does not
// hold up any other container: while its create is stuck, another
// container is created, started, waited for and deleted; the stuck call
// fails with DeadlineExceeded when its caller's deadline passes, and the
// daemon then still serves.
func TestShimHungCreate(t *testing.T) {
	d := newDaemon(t)
	c := d.client(t, "hang")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sctx, scancel := context.WithTimeout(ctx, 20*time.Second) // the caller gives up
	defer scancel()
	stuck, stuckErr, pidFile := hungCreate(t, d, c, ctx, sctx)

	for i := range 2 {
		id := fmt.Sprintf("other-%d", i)
		ctr := newClientContainer(t, c, ctx, id, []string{"sh", "-c", "exit 7"})
		task, exitc := startTask(t, ctx, ctr, d.creator(nil, nil, nil))
		if st := receiveExit(t, exitc); st.ExitCode() != 7 {
			t.Fatalf("%s exited %d, want 7", id, st.ExitCode())
		}
		if _, err := task.Delete(ctx); err != nil {
			t.Fatalf("delete task %s while another create hangs: %v", id, err)
		}
		if err := ctr.Delete(ctx); err != nil {
			t.Fatalf("delete container %s while another create hangs: %v", id, err)
		}
	}
	select {
	case err := <-stuckErr:
		t.Fatalf("the hung create returned before its caller gave up: %v", err)
	default:
	}

	err := <-stuckErr
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hung create: %v, want DeadlineExceeded", err)
	}
	// The daemon undoes the failed create on its own bound (the shim
	// asked to shut down, then berth-shim delete), holding only this
	// container's lock meanwhile.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if err := stuck.Delete(dctx); err != nil {
		t.Fatalf("delete the container whose create hung: %v", err)
	}
	if data, err := os.ReadFile(pidFile); err == nil {
		pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		if pid > 1 && proc.Alive(pid) {
			t.Errorf("the hung runtime (pid %d) outlived its container's cleanup", pid)
		}
	}
	if _, err := c.Containers(dctx); err != nil {
		t.Fatalf("berthd after the hung create: %v", err)
	}
}

// TestShimCallBoundedWithoutDeadline: a client that sets no deadline does
// not wait for a hung runtime for ever: the daemon's call to the shim has
// runtime.shim_call_timeout and fails with DeadlineExceeded naming the
// bound. Meanwhile another call on the same container waits for its lock
// only as long as its own caller lets it, and the container can be deleted
// afterwards, its hung runtime gone.
func TestShimCallBoundedWithoutDeadline(t *testing.T) {
	d := newDaemon(t, withRuntimeConfig("shim_call_timeout = \"5s\"\n"))
	c := d.client(t, "hang")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// No deadline: before the bound, this create never returned.
	stuck, stuckErr, pidFile := hungCreate(t, d, c, ctx, context.Background())

	// The container's lock is held by the hung create: a delete waits for
	// it no longer than its caller's deadline.
	wctx, wcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	err := stuck.Delete(wctx)
	wcancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("delete while the create hangs: %v, want DeadlineExceeded", err)
	}

	var createErr error
	select {
	case createErr = <-stuckErr:
	case <-ctx.Done():
		t.Fatal("a create without a deadline still waits for the hung runtime")
	}
	if !errors.Is(createErr, context.DeadlineExceeded) || !strings.Contains(createErr.Error(), "no answer within 5s") {
		t.Fatalf("hung create without a deadline: %v, want DeadlineExceeded naming the bound", createErr)
	}

	// Found: the delete that gave up did not run later, once the lock
	// was free (a waiter that ignored its deadline would have).
	if err := stuck.Delete(ctx); err != nil {
		t.Fatalf("delete the container whose create hung: %v", err)
	}
	// The shim ended its runtime call before it exited (its daemon had
	// hung up, so nothing else waited for the call): the runtime is gone,
	// not reparented away. Polled, since its death is the kernel's to
	// complete.
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		t.Fatalf("runtime pid file holds %q", data)
	}
	eventually(t, time.Minute, "the hung runtime to die with its container's cleanup", func() bool {
		return !proc.Alive(pid)
	})
}

// TestShimKilledDuringHungCreate: a shim killed while its runtime hangs in
// create cannot end the runtime call itself, which is reparented away from
// it; the cleanup after the dead shim (berth-shim delete) finds the call by
// the bundle in its environment and kills it.
func TestShimKilledDuringHungCreate(t *testing.T) {
	d := newDaemon(t)
	c := d.client(t, "hang")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	stuck, stuckErr, pidFile := hungCreate(t, d, c, ctx, ctx)
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	runtimePid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || runtimePid <= 1 {
		t.Fatalf("runtime pid file holds %q", data)
	}
	shimPid, err := shimapi.ReadPidFile(d.bundle("hang", "stuck"))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(shimPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-stuckErr:
		if err == nil {
			t.Fatal("create succeeded though its shim was killed")
		}
	case <-ctx.Done():
		t.Fatal("the create whose shim was killed never returned")
	}
	eventually(t, time.Minute, "the runtime left by the killed shim to die", func() bool {
		return !proc.Alive(runtimePid)
	})
	if err := stuck.Delete(ctx); err != nil {
		t.Fatalf("delete the container whose shim was killed: %v", err)
	}
}
