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
	script := fmt.Sprintf("#!/bin/sh\nfor a in \"$@\"; do\n  if [ \"$a\" = create ]; then echo $$ > %s; exec sleep 600; fi\ndone\nexec %s \"$@\"\n", pidFile, runc)
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
	runtime, pidFile := hangingRuntime(t)

	stuck := newClientContainer(t, c, ctx, "stuck", []string{"true"}, client.WithRuntime(runtime, nil))
	stuckErr := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second) // the caller gives up
		defer cancel()
		task, err := stuck.NewTask(sctx, d.creator(nil, nil, nil))
		if err == nil {
			task.Delete(context.WithoutCancel(ctx), client.WithProcessKill)
		}
		stuckErr <- err
	}()
	eventually(t, 15*time.Second, "the runtime's create to hang", func() bool {
		_, err := os.Stat(pidFile)
		return err == nil
	})

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
