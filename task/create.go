package task

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	runc "github.com/containerd/go-runc"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/spantrace"
	"github.com/berthrt/berth/io/stdio"
	"github.com/berthrt/berth/mount"
	"github.com/berthrt/berth/shimapi"
	"github.com/berthrt/berth/task/internal/cgroup"
)

// Create implements shimapi.TaskService. It runs as a sequence of steps;
// a step that fails undoes what it did itself, and one that succeeds
// returns its undo, so that when a later step fails the steps done so far
// are undone in reverse order and a failed Create leaves nothing behind
// (see doc.go).
func (s *Service) Create(ctx context.Context, req *shimapi.CreateRequest) (_ *shimapi.CreateResponse, retErr error) {
	if req.Id != s.cfg.ID {
		return nil, fmt.Errorf("create %q: this shim serves %q: %w", req.Id, s.cfg.ID, errdefs.ErrInvalidArgument)
	}
	ctx, cancel := s.detach(ctx)
	defer cancel()
	var undo undoStack
	defer func() {
		if retErr != nil {
			undo.run()
		}
	}()

	release, err := s.reserveInit(req.Id)
	if err != nil {
		return nil, err
	}
	undo.push(release)
	spec, cfg, err := s.createSpec(req.Stdio)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.cleanupOnExit = req.CleanupOnExit
	s.deferRuntimeDelete = req.CleanupOnExit && spec.releaseLeavesNoProcess()
	s.mu.Unlock()
	unmount, err := s.mountRootfs(req.Rootfs)
	if err != nil {
		return nil, err
	}
	undo.push(unmount)
	pio, err := stdio.New(cfg, int(spec.Process.User.UID), int(spec.Process.User.GID))
	if err != nil {
		return nil, fmt.Errorf("stdio: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	undo.push(func() { pio.Close() })
	init, early, err := s.createInit(ctx, pio, req)
	if err != nil {
		return nil, err
	}
	// The init process is the container's from here (see createInit).
	pid := init.Pid()
	if early != nil {
		// An init that exited already took its cgroup with it.
		s.processExited(init, *early)
	} else {
		span := spantrace.Start("watch cgroup")
		s.watchCgroup(pid)
		span.End()
	}
	s.log.Info("created", "pid", pid, "started", req.Start)
	return &shimapi.CreateResponse{Pid: uint32(pid)}, nil
}

// undoStack collects the undos of the steps done so far.
type undoStack []func()

func (u *undoStack) push(fn func()) { *u = append(*u, fn) }

// run undoes the steps, the last one first.
func (u undoStack) run() {
	for i := len(u) - 1; i >= 0; i-- {
		u[i]()
	}
}

// reserveInit takes the init slot, so that a concurrent Create fails while
// this one works; its undo frees the slot.
func (s *Service) reserveInit(id string) (undo func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.init != nil {
		return nil, fmt.Errorf("container %q: already created: %w", id, errdefs.ErrAlreadyExists)
	}
	placeholder := newProcess("", nil, nil)
	placeholder.status = Deleted
	s.init = placeholder
	return func() {
		s.mu.Lock()
		s.init = nil
		s.mu.Unlock()
	}, nil
}

// createSpec reads what Create needs of the bundle's config.json and
// checks it against the requested stdio.
func (s *Service) createSpec(st *shimapi.Stdio) (*bundleSpec, stdio.Config, error) {
	spec, err := s.loadBundleSpec()
	if err != nil {
		return nil, stdio.Config{}, err
	}
	cfg := stdioConfig(st)
	if spec.Process == nil {
		return nil, cfg, fmt.Errorf("bundle %s: config.json has no process: %w", s.cfg.Bundle, errdefs.ErrInvalidArgument)
	}
	if spec.Process.Terminal != cfg.Terminal {
		return nil, cfg, fmt.Errorf("create: stdio terminal=%v but config.json process.terminal=%v: %w", cfg.Terminal, spec.Process.Terminal, errdefs.ErrInvalidArgument)
	}
	return spec, cfg, nil
}

// mountRootfs mounts the request's rootfs mounts, in order, at the
// bundle's rootfs folder (none: the spec names a ready root folder); its
// undo unmounts them.
func (s *Service) mountRootfs(ms []*shimapi.Mount) (undo func(), err error) {
	if len(ms) == 0 {
		return func() {}, nil
	}
	// The shim converts the shim API's mounts itself rather than through
	// internal/apiconv, which would link every daemon API message into it.
	mounts := make([]mount.Mount, 0, len(ms))
	for _, m := range ms {
		mounts = append(mounts, mount.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	rootfs := filepath.Join(s.cfg.Bundle, "rootfs")
	if err := os.MkdirAll(rootfs, 0o711); err != nil {
		return nil, err
	}
	s.mu.Lock()
	volatile := s.cleanupOnExit
	s.mu.Unlock()
	var workdirs []string
	mounted := false
	if volatile {
		workdirs, mounted = s.mountVolatile(mounts, rootfs)
	}
	if !mounted {
		if err := mount.All(mounts, rootfs); err != nil {
			return nil, fmt.Errorf("mount rootfs: %w", err)
		}
	}
	s.mu.Lock()
	s.volatileWorkdirs = workdirs
	s.mu.Unlock()
	return func() {
		if err := s.unmountRootfs(); err != nil {
			s.log.Error("unmount rootfs after failed create", "error", err)
		}
	}, nil
}

// createInit has the runtime create the container with pio as the init
// process's stdio, and reads its pid; with start, the same runtime call
// also starts it (`runc run --detach`: one runtime process instead of two,
// and the init is Running from the outset). It returns the init process,
// and the exit of init if it came already; when it fails it has removed
// what the runtime made. It is Create's last step that can fail, so it
// returns no undo: once it succeeds, the init is the container's. It
// makes the init the service's and publishes TaskCreate (and with start
// TaskStart) before the init's exit can be routed to it, so that a
// TaskExit always comes after them and finds the process.
func (s *Service) createInit(ctx context.Context, pio *stdio.IO, req *shimapi.CreateRequest) (*process, *exitInfo, error) {
	start := req.Start
	init := newProcess("", &initActions{s: s}, pio)
	pidFile := filepath.Join(s.cfg.Bundle, "init.pid")
	w := s.watchExits()
	fail := func(err error) (*process, *exitInfo, error) {
		s.cancelWatch(w)
		s.runtime.Delete(ctx, s.cfg.ID, &runc.DeleteOpts{Force: true})
		return nil, nil, err
	}
	opts := &runc.CreateOpts{
		PidFile:       pidFile,
		IO:            pio.RuncIO(),
		ConsoleSocket: pio.ConsoleSocket(),
	}
	var err error
	if start {
		span := spantrace.Start("runc run")
		err = s.runInit(ctx, opts)
		span.End()
		if err != nil {
			return fail(s.runtimeError(err, "run"))
		}
		init.status = Running // not shared yet: no lock needed
	} else {
		span := spantrace.Start("runc create")
		err = s.runtime.Create(ctx, s.cfg.ID, s.cfg.Bundle, opts)
		span.End()
		if err != nil {
			return fail(s.runtimeError(err, "create"))
		}
	}
	pid, err := runc.ReadPidFile(pidFile)
	if err == nil {
		err = pio.Started()
	}
	if err != nil {
		return fail(fmt.Errorf("create: %w", err))
	}
	init.pid = pid
	s.mu.Lock()
	s.init = init
	s.mu.Unlock()
	s.events.publish(&shimapi.TaskCreate{ContainerId: s.cfg.ID, Bundle: s.cfg.Bundle, Pid: uint32(pid), Stdio: req.Stdio})
	if start {
		s.events.publish(&shimapi.TaskStart{ContainerId: s.cfg.ID, Pid: uint32(pid)})
	}
	return init, s.settle(w, pid, init), nil
}

// runInit runs the container detached: the runtime returns once the init
// process runs user code. Unlike Create, go-runc's Run leaves the parent's
// copies of the stdio pipes' write ends open; they are closed here once
// the runtime is done with them, or the output copiers would never see
// EOF.
func (s *Service) runInit(ctx context.Context, opts *runc.CreateOpts) error {
	opts.Detach = true
	_, err := s.runtime.Run(ctx, s.cfg.ID, s.cfg.Bundle, opts)
	if c, ok := opts.IO.(runc.StartCloser); ok {
		if cerr := c.CloseAfterStart(); cerr != nil && err == nil {
			err = cerr
		}
	}
	return err
}

// watchCgroup loads the container's cgroup for Stats and OOM events. A
// cgroup that cannot be read costs Stats, not the container.
func (s *Service) watchCgroup(pid int) {
	cg, err := cgroup.Load(pid)
	if err != nil {
		s.log.Warn("container cgroup unreadable: no stats, no OOM events", "error", err)
		return
	}
	if err := cg.WatchOOM(func() {
		s.events.publish(&shimapi.TaskOOM{ContainerId: s.cfg.ID})
	}); err != nil {
		s.log.Warn("no OOM events", "error", err)
	}
	s.mu.Lock()
	s.cg = cg
	s.mu.Unlock()
}

// bundleSpec is what Create needs of the bundle's config.json. Decoding
// just these fields rather than a whole specs.Spec keeps encoding/json from
// building and caching decoders for the spec's many types, which an idle
// shim would hold for good (about 200 KB of heap).
type bundleSpec struct {
	Process *struct {
		Terminal bool       `json:"terminal"`
		User     specs.User `json:"user"`
	} `json:"process"`
	Hooks *struct {
		Poststop []json.RawMessage `json:"poststop"`
	} `json:"hooks"`
	Linux *struct {
		Namespaces []specs.LinuxNamespace `json:"namespaces"`
	} `json:"linux"`
}

// releaseLeavesNoProcess reports whether the container's processes are
// all gone once its init has exited and the runtime's delete does nothing
// the caller of Delete must wait for: the container has a PID namespace of
// its own (the kernel kills what is left in it when its init dies; in a
// shared one the runtime's delete kills the rest) and no poststop hooks
// (which the runtime runs in its delete, and which the OCI spec wants run
// before a delete returns).
func (b *bundleSpec) releaseLeavesNoProcess() bool {
	if b.Hooks != nil && len(b.Hooks.Poststop) > 0 {
		return false
	}
	if b.Linux == nil {
		return false
	}
	for _, ns := range b.Linux.Namespaces {
		if ns.Type == specs.PIDNamespace {
			return ns.Path == ""
		}
	}
	return false
}

func (s *Service) loadBundleSpec() (*bundleSpec, error) {
	data, err := os.ReadFile(filepath.Join(s.cfg.Bundle, "config.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("bundle %s has no config.json: %w", s.cfg.Bundle, errdefs.ErrFailedPrecondition)
	}
	if err != nil {
		return nil, err
	}
	var spec bundleSpec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("bundle %s: config.json: %v: %w", s.cfg.Bundle, err, errdefs.ErrInvalidArgument)
	}
	return &spec, nil
}

func stdioConfig(st *shimapi.Stdio) stdio.Config {
	return stdio.Config{Stdin: st.GetStdin(), Stdout: st.GetStdout(), Stderr: st.GetStderr(), Terminal: st.GetTerminal()}
}
