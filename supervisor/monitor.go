package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthrt/berth/events/topics"
	"github.com/berthrt/berth/shimapi"
)

const (
	// closeGrace is how long a closed connection waits for the pidfd to
	// say the shim exited before it tries to reconnect.
	closeGrace = 200 * time.Millisecond
	// reconnectTimeout bounds one reconnect attempt to a live shim.
	reconnectTimeout = time.Second
	// synthesizedExitStatus is reported for a shim that died without a
	// persisted exit: the container was killed with it (128+SIGKILL).
	synthesizedExitStatus = 128 + uint32(syscall.SIGKILL)
)

// startRunning makes c the shim's connection and starts run, which owns it
// from here on.
func (sh *Shim) startRunning(c *conn) {
	sh.useConn(c)
	sh.done = make(chan struct{})
	w := sh.s.watchPid(int(c.info.ShimPid))
	if !sh.s.goroutine(func() { sh.run(c, w) }) {
		w.close()
		c.client.Close()
		close(sh.done)
	}
}

// run is the one goroutine that owns a live shim's connection. For each
// connection it runs the event loop, then waits for the shim to die, the
// connection to close, or sh.ctx to end (Close, Delete).
func (sh *Shim) run(c *conn, w *pidWatch) {
	defer close(sh.done)
	defer w.close()
	for {
		evCtx, evCancel := context.WithCancel(sh.ctx)
		evDone := make(chan struct{})
		if !sh.s.goroutine(func() {
			defer close(evDone)
			sh.eventLoop(evCtx, c.task)
		}) {
			close(evDone) // Close has begun; sh.ctx is done
		}
		dead := false
		select {
		case <-sh.ctx.Done():
		case <-w.exited:
			dead = true
		case <-c.closed:
			// The shim's socket closes when it dies; the pidfd may lag.
			dead = w.waitExit(sh.ctx, closeGrace)
		}
		evCancel()
		c.client.Close()
		<-evDone
		if sh.ctx.Err() != nil {
			return
		}
		if !dead {
			if c = sh.reconnect(w); c != nil {
				sh.useConn(c)
				sh.s.log.Info("reconnected to shim", "task", sh.String())
				continue
			}
			if sh.ctx.Err() != nil {
				return
			}
		}
		// The shim is gone. Unless Delete shut it down, or it died during
		// Create (which then fails and cleans up), handle its death.
		if !sh.setState(stateReaping, stateRunning) {
			sh.setState(stateDeleting, stateCreating)
			return
		}
		sh.dropConn()
		sh.s.log.Warn("shim died", "task", sh.String(), "shim_pid", w.pid)
		sh.reap(false)
		return
	}
}

// reconnect dials a shim whose connection closed until it answers. It
// returns nil when the shim turns out dead (a refused dial, a missing
// socket, or the pid gone) or sh.ctx ends.
func (sh *Shim) reconnect(w *pidWatch) *conn {
	b := newBackoff(20*time.Millisecond, time.Second)
	for {
		select {
		case <-w.exited:
			return nil
		default:
		}
		ctx, cancel := context.WithTimeout(sh.ctx, reconnectTimeout)
		c, err := sh.connect(ctx)
		cancel()
		if err == nil {
			return c
		}
		if sh.ctx.Err() != nil || deadDial(err) {
			return nil
		}
		sh.s.log.Warn("reconnect to shim", "task", sh.String(), "error", err)
		if b.wait(sh.ctx) != nil {
			return nil
		}
	}
}

// deadDial reports whether a dial error proves the shim gone: nothing
// listens on its socket, or the socket was removed.
func deadDial(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, fs.ErrNotExist)
}

// reap handles the death of a shim: it runs `berth-shim delete` (unless
// the bundle was reaped before, cleanedUp), settles the exit status,
// publishes it unless it was published already, and reduces the bundle.
// It is idempotent across daemon restarts: every step is safe to repeat,
// and the markers keep the exit from being published twice.
func (sh *Shim) reap(cleanedUp bool) {
	defer close(sh.reaped)
	defer sh.markClassified()
	s, ctx := sh.s, sh.ctx
	log := s.log.With("task", sh.String())

	// init.pid goes with the cleanup; read it first for a synthesized exit.
	initPid := sh.TaskPid()
	if data, err := os.ReadFile(filepath.Join(sh.Bundle, "init.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 0 {
			initPid = uint32(pid)
		}
	}
	cleanupErr := error(nil)
	if !cleanedUp {
		cleanupErr = sh.shimDelete(ctx)
		if cleanupErr != nil {
			log.Error("clean up after dead shim", "error", cleanupErr)
		}
	}
	st, err := shimapi.ReadExitFile(sh.Bundle)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			log.Error("read exit file", "error", err)
		}
		st = shimapi.ExitStatus{Pid: initPid, Status: synthesizedExitStatus, ExitedAt: time.Now()}
		log.Warn("shim died without a persisted exit status; synthesized one", "exit_status", st.Status, "pid", st.Pid)
		if err := shimapi.WriteExitFile(sh.Bundle, st); err != nil {
			log.Error("persist synthesized exit status", "error", err)
		}
	}
	sh.mu.Lock()
	sh.exit = st
	sh.state = stateStopped
	if st.Pid != 0 {
		sh.taskPid = st.Pid
	}
	sh.mu.Unlock()

	if !hasMarker(sh.Bundle, publishedMarker) {
		env := &shimapi.Envelope{
			Timestamp: timestamppb.Now(),
			Topic:     topics.TaskExit,
			Event: &shimapi.Envelope_Exit{Exit: &shimapi.TaskExit{
				ContainerId: sh.ID, Pid: st.Pid, ExitStatus: st.Status, ExitedAt: timestamppb.New(st.ExitedAt),
			}},
		}
		if err := s.forward(ctx, sh.Namespace, sh.ID, env); err != nil {
			return // Close: the next Restore publishes it
		}
		if err := writeMarker(sh.Bundle, publishedMarker); err != nil {
			log.Error("persist exit-published marker", "error", err)
			return
		}
	}
	if cleanedUp {
		return
	}
	if cleanupErr != nil {
		return // the bundle stays whole; the next Restore cleans up again
	}
	if err := reduceBundle(sh.Bundle); err != nil {
		log.Error("reduce bundle of dead shim", "error", err)
		return
	}
	if err := writeMarker(sh.Bundle, reapedMarker); err != nil {
		log.Error("persist shim-reaped marker", "error", err)
	}
}

// shimDelete runs `berth-shim delete` for the bundle: it kills what is left
// of the shim and the container, deletes the container from the runtime and
// unmounts the rootfs. At most maxConcurrentCleanups run at once.
func (sh *Shim) shimDelete(ctx context.Context) error {
	return sh.s.shimDelete(ctx, sh.Namespace, sh.ID, sh.Bundle, "", sh.Runtime)
}

// shimDelete runs `berth-shim delete` for the task (ns, id) whose bundle
// is now the folder bundle, bounded by Config.CleanupTimeout. servedAs is
// the bundle's path while its shim served it, when it was set aside since
// (its shim's runtime calls name that path), or "".
func (s *Supervisor) shimDelete(ctx context.Context, ns, id, bundle, servedAs, runtime string) error {
	select {
	case s.cleanups <- struct{}{}:
		defer func() { <-s.cleanups }()
	case <-ctx.Done():
		return ctx.Err()
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CleanupTimeout)
	defer cancel()
	args := []string{"delete", "--namespace", ns, "--id", id, "--bundle", bundle,
		"--runtime", runtime, "--runtime-root", s.runtimeRoot(ns)}
	if servedAs != "" {
		args = append(args, "--served-as", servedAs)
	}
	cmd := exec.CommandContext(ctx, s.cfg.ShimBinary, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if _, err := cmd.Output(); err != nil {
		return fmt.Errorf("berth-shim delete %s/%s: %w: %s", ns, id, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return nil
}
