package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/spantrace"
	"github.com/berthrt/berth/shimapi"
)

const (
	// startTimeout bounds `berth-shim start` (which waits up to 10s for
	// the serving copy itself) and the first connection.
	startTimeout = 15 * time.Second
	// abandonTimeout bounds the cleanup after a failed Create.
	abandonTimeout = 30 * time.Second
)

// CreateOpts describe a new task.
type CreateOpts struct {
	// Runtime is the OCI runtime; empty means Config.Runtime.
	Runtime string
	// Spec is the OCI runtime spec, JSON: the bundle's config.json.
	Spec []byte
	// Rootfs are mounted in order onto <bundle>/rootfs by the shim; empty
	// when Spec names a ready root filesystem.
	Rootfs []*shimapi.Mount
	// Stdio of the init process.
	Stdio *shimapi.Stdio
	// Start runs the init process in the call that creates the container
	// (see shimapi.CreateRequest.Start).
	Start bool
	// CleanupOnExit has the shim release the container as soon as the init
	// process exits (see shimapi.CreateRequest.CleanupOnExit).
	CleanupOnExit bool
}

// Create writes the bundle of task (ns, id), starts its shim, connects and
// has the shim create the container (its init process exists, stopped
// before user code; with opts.Start, running). On any failure it cleans up what it made (the shim,
// the container, the bundle) and returns the error; a task of that name
// that exists already fails with ErrAlreadyExists.
func (s *Supervisor) Create(ctx context.Context, ns, id string, opts CreateOpts) (_ *Shim, retErr error) {
	if err := validateName(ns, id); err != nil {
		return nil, err
	}
	if len(opts.Spec) == 0 {
		return nil, fmt.Errorf("create task %s/%s: no spec: %w", ns, id, errdefs.ErrInvalidArgument)
	}
	runtime := opts.Runtime
	if runtime == "" {
		runtime = s.cfg.Runtime
	}
	sh := s.newShim(ns, id, runtime, stateCreating)
	sh.stdio = stdioOrEmpty(opts.Stdio)
	if err := s.addWhenFree(ctx, sh); err != nil {
		sh.cancel()
		return nil, fmt.Errorf("create task: %w", err)
	}
	bundleMade := false
	defer func() {
		if retErr == nil {
			return
		}
		retErr = fmt.Errorf("create task %s: %w", sh, retErr)
		if err := s.abandon(ctx, sh, bundleMade); err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("clean up: %w", err))
		}
	}()
	// The runtime's state holds no file of the container's.
	if err := os.MkdirAll(s.runtimeRoot(ns), StatePerm); err != nil {
		return nil, err
	}
	req := &shimapi.CreateRequest{Id: id, Rootfs: opts.Rootfs, Stdio: opts.Stdio, Start: opts.Start, CleanupOnExit: opts.CleanupOnExit}
	var resp *shimapi.CreateResponse
	// Once the container is created (or not): see takeSpare.
	defer s.refillSpares()
	if sp := s.takeSpare(); sp != nil {
		span := spantrace.Start("bind spare")
		if err := sh.bindSpare(sp, opts.Spec, runtime); err != nil {
			s.discardSpare(sp)
			return nil, err
		}
		bundleMade = true
		span.End()
		span = spantrace.Start("shim Create")
		req.Bind = &shimapi.Binding{Namespace: ns, Bundle: sh.Bundle, Runtime: runtime, RuntimeRoot: s.runtimeRoot(ns)}
		var err error
		resp, err = sp.conn.task.Create(ctx, req)
		// Only now: a spare serves no events before it is bound. When the
		// Create failed, abandon shuts the shim down through run.
		sh.startRunning(sp.conn)
		if err != nil {
			return nil, err
		}
		span.End()
	} else {
		span := spantrace.Start("write bundle")
		if err := writeBundle(sh.Bundle, opts.Spec, runtime, sh.stdio); err != nil {
			return nil, err
		}
		bundleMade = true
		span.End()
		sctx, cancel := context.WithTimeout(ctx, startTimeout)
		defer cancel()
		span = spantrace.Start("berth-shim start")
		if err := sh.shimStart(sctx); err != nil {
			return nil, err
		}
		span.End()
		span = spantrace.Start("connect shim")
		c, err := sh.connect(sctx)
		if err != nil {
			return nil, err
		}
		sh.startRunning(c)
		span.End()
		span = spantrace.Start("shim Create")
		if resp, err = c.task.Create(ctx, req); err != nil {
			return nil, err
		}
		span.End()
	}
	// From here on a daemon that dies leaves a task its caller may have
	// been told of: a restarted daemon keeps it.
	if err := os.Remove(filepath.Join(sh.Bundle, creatingMarker)); err != nil {
		return nil, fmt.Errorf("task created, but its bundle could not be marked so: %w", err)
	}
	sh.mu.Lock()
	ok := sh.state == stateCreating
	if ok {
		sh.state = stateRunning
		sh.taskPid = resp.Pid
	}
	sh.mu.Unlock()
	if !ok {
		// run saw the shim die while the state said creating, and left
		// the cleanup to us.
		return nil, fmt.Errorf("shim died during create: %w", errdefs.ErrUnavailable)
	}
	sh.markClassified()
	return sh, nil
}

// shimStart runs `berth-shim start` for the task and waits for it. The
// serving shim it re-executes is no child of ours.
func (sh *Shim) shimStart(ctx context.Context) error {
	s := sh.s
	cmd := exec.CommandContext(ctx, s.cfg.ShimBinary, "start",
		"--namespace", sh.Namespace, "--id", sh.ID, "--bundle", sh.Bundle,
		"--runtime", sh.Runtime, "--runtime-root", s.runtimeRoot(sh.Namespace))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("berth-shim start: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	if addr := strings.TrimSpace(string(out)); addr != shimapi.SocketPath(sh.Bundle) {
		return fmt.Errorf("berth-shim start printed %q, want %q: %w", addr, shimapi.SocketPath(sh.Bundle), errdefs.ErrInternal)
	}
	return nil
}

// abandon undoes a failed Create: it stops the shim and its run goroutine,
// has `berth-shim delete` kill and delete what is left, and removes the
// bundle when Create made it. It runs on its own deadline, also when ctx
// was cancelled.
func (s *Supervisor) abandon(ctx context.Context, sh *Shim, bundleMade bool) error {
	defer s.remove(sh)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abandonTimeout)
	defer cancel()
	if sh.done != nil {
		sh.setState(stateDeleting, stateCreating)
		// Asked politely first; berth-shim delete kills it anyway.
		sh.Task().Shutdown(ctx, &shimapi.ShutdownRequest{Id: sh.ID, Now: true})
		sh.cancel()
		<-sh.done
	}
	sh.cancel()
	if !bundleMade {
		return nil
	}
	if err := sh.shimDelete(ctx); err != nil {
		return err
	}
	return sh.s.removeBundle(sh.Bundle, sh.runtimeState())
}

// runtimeState is the runtime's state folder of the task.
func (sh *Shim) runtimeState() string { return sh.s.runtimeState(sh.Namespace, sh.ID) }
