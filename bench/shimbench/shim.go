package main

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
	"time"

	"github.com/berthrt/berth/bench/internal/proc"
	"github.com/berthrt/berth/shimapi"
	"github.com/containerd/ttrpc"
)

// rpcTimeout bounds one call to a shim.
const rpcTimeout = 30 * time.Second

// shimInstance is one berth-shim started by the benchmark.
type shimInstance struct {
	id     string
	bundle string
	pid    int // the long-lived shim, from ConnectResponse; 0 until known
	client *ttrpc.Client
	task   shimapi.TaskClient
}

// shimTimes are the figures of one run through a shim.
type shimTimes struct {
	core  time.Duration // Create, Start, Wait, Delete: the floor's steps
	total time.Duration // from `berth-shim start` to the end of Shutdown
}

// startShim writes a bundle running args, starts a shim for it with
// `berth-shim start`, connects and asks for the shim's pid. The shim is
// registered with the workspace before it exists, so that Close cleans up
// after a start that fails halfway.
func (w *workspace) startShim(ctx context.Context, id string) (*shimInstance, error) {
	s := &shimInstance{id: id, bundle: filepath.Join(w.dir, id)}
	w.shims[id] = s
	cmd, cancel := proc.Command(w.shimBin, "start", "--namespace", w.namespace, "--id", id,
		"--bundle", s.bundle, "--runtime", w.runtime, "--runtime-root", w.runcRoot)
	out, err := cmd.Output()
	cancel()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("berth-shim start %s: %w: %s", id, err, strings.TrimSpace(string(ee.Stderr)))
		}
		return nil, fmt.Errorf("berth-shim start %s: %w", id, err)
	}
	if got := strings.TrimSpace(string(out)); got != shimapi.SocketPath(s.bundle) {
		return nil, fmt.Errorf("berth-shim start %s printed %q, want %q", id, got, shimapi.SocketPath(s.bundle))
	}
	cctx, ccancel := context.WithTimeout(ctx, rpcTimeout)
	defer ccancel()
	s.client, s.task, err = shimapi.Connect(cctx, s.bundle)
	if err != nil {
		return nil, err
	}
	resp, err := s.task.Connect(cctx, &shimapi.ConnectRequest{Id: id})
	if err != nil {
		return nil, fmt.Errorf("shim %s: connect: %w", id, err)
	}
	s.pid = int(resp.ShimPid)
	return s, nil
}

// shutdown asks the shim to exit now. The shim may close the connection
// before its answer arrives; that counts as done.
func (s *shimInstance) shutdown(ctx context.Context) error {
	_, err := s.task.Shutdown(ctx, &shimapi.ShutdownRequest{Id: s.id, Now: true})
	if err != nil && !errors.Is(err, ttrpc.ErrClosed) {
		return fmt.Errorf("shim %s: shutdown: %w", s.id, err)
	}
	return nil
}

// stopShim shuts a shim down whose container is deleted, waits for the
// process to exit (killing it when it does not), and removes its bundle.
func (w *workspace) stopShim(ctx context.Context, s *shimInstance) error {
	cctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	err := s.shutdown(cctx)
	s.client.Close()
	s.client = nil
	if err != nil {
		return err
	}
	return w.forgetShim(s)
}

// forgetShim collects the exited shim, then removes its bundle.
func (w *workspace) forgetShim(s *shimInstance) error {
	if err := proc.Reap(s.pid); err != nil {
		return fmt.Errorf("shim %s: %w", s.id, err)
	}
	delete(w.shims, s.id)
	return os.RemoveAll(s.bundle)
}

// shimOnce runs one container through a fresh shim: start, Connect,
// Create (empty stdio, no rootfs mounts: config.json names the busybox
// folder), Start, Wait, Delete, Shutdown.
func (w *workspace) shimOnce(ctx context.Context) (shimTimes, error) {
	var t shimTimes
	id := w.newID("shim")
	if _, err := w.floor.WriteBundle(ctx, id, "/bin/true"); err != nil {
		return t, err
	}
	cctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()

	begin := time.Now()
	s, err := w.startShim(cctx, id)
	if err != nil {
		return t, err
	}
	coreBegin := time.Now()
	if _, err := s.task.Create(cctx, &shimapi.CreateRequest{Id: id, Stdio: &shimapi.Stdio{}}); err != nil {
		return t, fmt.Errorf("shim %s: create: %w", id, err)
	}
	if _, err := s.task.Start(cctx, &shimapi.StartRequest{Id: id}); err != nil {
		return t, fmt.Errorf("shim %s: start: %w", id, err)
	}
	wr, err := s.task.Wait(cctx, &shimapi.WaitRequest{Id: id})
	if err != nil {
		return t, fmt.Errorf("shim %s: wait: %w", id, err)
	}
	if _, err := s.task.Delete(cctx, &shimapi.DeleteRequest{Id: id}); err != nil {
		return t, fmt.Errorf("shim %s: delete: %w", id, err)
	}
	t.core = time.Since(coreBegin)
	if err := s.shutdown(cctx); err != nil {
		return t, err
	}
	t.total = time.Since(begin)
	s.client.Close()
	s.client = nil
	if err := w.forgetShim(s); err != nil {
		return t, err
	}
	if wr.ExitStatus != 0 {
		return t, fmt.Errorf("container %s: /bin/true exited with %d", id, wr.ExitStatus)
	}
	return t, nil
}

// shimMemory starts n shims, each with a running `sleep` container,
// lets them run for settle and reads the memory of each while all of them
// run; then kills and deletes the containers and stops the shims. With n > 1 the
// shims share the pages of their binary, as on a host with many containers.
// When smapsCopy is set, the first shim's smaps are copied there.
func (w *workspace) shimMemory(ctx context.Context, n int, settle time.Duration, smapsCopy string) ([]proc.Memory, error) {
	cctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	var shims []*shimInstance
	for range n {
		id := w.newID("idle")
		if _, err := w.floor.WriteBundle(ctx, id, "sleep", strconv.Itoa(int(settle.Seconds())+1000)); err != nil {
			return nil, err
		}
		s, err := w.startShim(ctx, id)
		if err != nil {
			return nil, err
		}
		shims = append(shims, s)
		if _, err := s.task.Create(cctx, &shimapi.CreateRequest{Id: id, Stdio: &shimapi.Stdio{}}); err != nil {
			return nil, fmt.Errorf("shim %s: create: %w", id, err)
		}
		if _, err := s.task.Start(cctx, &shimapi.StartRequest{Id: id}); err != nil {
			return nil, fmt.Errorf("shim %s: start: %w", id, err)
		}
	}
	select {
	case <-time.After(settle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	mems := make([]proc.Memory, 0, n)
	for _, s := range shims {
		m, err := proc.ReadMemory(s.pid)
		if err != nil {
			return nil, err
		}
		mems = append(mems, m)
	}
	if smapsCopy != "" {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(shims[0].pid) + "/smaps")
		if err == nil {
			err = os.WriteFile(smapsCopy, data, 0o644)
		}
		if err != nil {
			return nil, fmt.Errorf("copy smaps: %w", err)
		}
	}

	// The calls of the start had their bound; the teardown gets its own,
	// which a long settle has not used up.
	cancel()
	cctx, cancel = context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	for _, s := range shims {
		if _, err := s.task.Kill(cctx, &shimapi.KillRequest{Id: s.id, Signal: uint32(syscall.SIGKILL)}); err != nil {
			return nil, fmt.Errorf("shim %s: kill: %w", s.id, err)
		}
		if _, err := s.task.Wait(cctx, &shimapi.WaitRequest{Id: s.id}); err != nil {
			return nil, fmt.Errorf("shim %s: wait: %w", s.id, err)
		}
		if _, err := s.task.Delete(cctx, &shimapi.DeleteRequest{Id: s.id}); err != nil {
			return nil, fmt.Errorf("shim %s: delete: %w", s.id, err)
		}
		if err := w.stopShim(ctx, s); err != nil {
			return nil, err
		}
	}
	return mems, nil
}

// meanMemory averages the figures of several shims.
func meanMemory(mems []proc.Memory) proc.Memory {
	n := len(mems)
	if n == 0 {
		return proc.Memory{PSSAnonKB: -1, PSSFileKB: -1}
	}
	var sum proc.Memory
	split := true
	for _, m := range mems {
		sum.PSSKB += m.PSSKB
		sum.RSSKB += m.RSSKB
		sum.PSSAnonKB += m.PSSAnonKB
		sum.PSSFileKB += m.PSSFileKB
		split = split && m.PSSAnonKB >= 0 && m.PSSFileKB >= 0
	}
	mean := proc.Memory{PSSKB: sum.PSSKB / n, RSSKB: sum.RSSKB / n, PSSAnonKB: sum.PSSAnonKB / n, PSSFileKB: sum.PSSFileKB / n}
	if !split {
		mean.PSSAnonKB, mean.PSSFileKB = -1, -1
	}
	return mean
}
