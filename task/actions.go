package task

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	runc "github.com/containerd/go-runc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/spantrace"
	"github.com/berthrt/berth/shimapi"
)

// The runtime calls behind the transitions of the state machine (state.go):
// initActions for the container's init process, execActions for an exec
// process. They run with the process's mu held (see actions in process.go).

// initActions are the runtime calls behind the init process's transitions.
type initActions struct{ s *Service }

func (a *initActions) start(ctx context.Context, p *process) (int, *exitInfo, error) {
	defer spantrace.Start("runc start").End()
	if err := a.s.runtime.Start(ctx, a.s.cfg.ID); err != nil {
		return 0, nil, a.s.runtimeError(err, "start")
	}
	return 0, nil, nil
}

func (a *initActions) pause(ctx context.Context) error {
	if err := a.s.runtime.Pause(ctx, a.s.cfg.ID); err != nil {
		return a.s.runtimeError(err, "pause")
	}
	return nil
}

func (a *initActions) resume(ctx context.Context) error {
	if err := a.s.runtime.Resume(ctx, a.s.cfg.ID); err != nil {
		return a.s.runtimeError(err, "resume")
	}
	return nil
}

func (a *initActions) kill(ctx context.Context, p *process, sig int, all bool) error {
	if err := a.s.runtime.Kill(ctx, a.s.cfg.ID, sig, &runc.KillOpts{All: all}); err != nil {
		return a.s.runtimeError(err, "kill")
	}
	return nil
}

// delete releases the container (removes it from the runtime and unmounts
// the rootfs, unless the release after the exit did already; see
// release.go) and removes the exit file: the exit has now been handed over.
func (a *initActions) delete(ctx context.Context, p *process) error {
	s := a.s
	if err := s.rel.run(ctx, s.releaseContainer); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(s.cfg.Bundle, shimapi.ExitFileName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	os.Remove(filepath.Join(s.cfg.Bundle, "init.pid"))
	return nil
}

// execActions are the runtime calls behind an exec process's transitions.
type execActions struct {
	s    *Service
	spec specs.Process
}

func (a *execActions) start(ctx context.Context, p *process) (int, *exitInfo, error) {
	s := a.s
	pidFile := filepath.Join(s.cfg.Bundle, "exec-"+p.id+".pid")
	defer os.Remove(pidFile)
	w := s.watchExits()
	err := s.runtime.Exec(ctx, s.cfg.ID, a.spec, &runc.ExecOpts{
		PidFile:       pidFile,
		IO:            p.io.RuncIO(),
		ConsoleSocket: p.io.ConsoleSocket(),
		Detach:        true,
	})
	if err != nil {
		s.cancelWatch(w)
		return 0, nil, s.runtimeError(err, "exec")
	}
	pid, err := runc.ReadPidFile(pidFile)
	if err == nil {
		err = p.io.Started()
	}
	if err != nil {
		s.cancelWatch(w)
		return 0, nil, fmt.Errorf("exec %s: %w", p.id, err)
	}
	return pid, s.settle(w, pid, p), nil
}

func (a *execActions) pause(context.Context) error {
	return fmt.Errorf("an exec process is paused with its container: %w", errdefs.ErrNotImplemented)
}

func (a *execActions) resume(context.Context) error {
	return fmt.Errorf("an exec process is resumed with its container: %w", errdefs.ErrNotImplemented)
}

func (a *execActions) kill(ctx context.Context, p *process, sig int, all bool) error {
	pid := p.pid // mu is held by the transition
	if pid == 0 {
		return fmt.Errorf("exec %s: not started: %w", p.id, errdefs.ErrFailedPrecondition)
	}
	if err := unix.Kill(pid, unix.Signal(sig)); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("exec %s: process already finished: %w", p.id, errdefs.ErrNotFound)
		}
		return fmt.Errorf("exec %s: kill: %w", p.id, err)
	}
	return nil
}

func (a *execActions) delete(context.Context, *process) error { return nil }

// runtimeError turns a failed runtime call into an error that carries the
// runtime's own message from its log.
func (s *Service) runtimeError(err error, op string) error {
	if msg := lastRuntimeError(s.runtime.Log); msg != "" {
		return fmt.Errorf("runtime %s: %s: %w", op, msg, errdefs.ErrFailedPrecondition)
	}
	return fmt.Errorf("runtime %s: %w", op, err)
}

// lastRuntimeError returns the message of the last error-level line of a
// runc JSON log.
func lastRuntimeError(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var msg string
	for _, line := range bytes.Split(data, []byte("\n")) {
		var l struct{ Level, Msg string }
		if json.Unmarshal(line, &l) == nil && (l.Level == "error" || l.Level == "fatal") {
			msg = l.Msg
		}
	}
	return msg
}
