package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/fsperm"
	"github.com/berthrt/berth/internal/shimlaunch"
	"github.com/berthrt/berth/shimapi"
)

// spareDir is the folder under StateDir that holds the folders of spare
// shims. A dot name cannot be a namespace.
const spareDir = ".spare"

// spareShutdownWait bounds the Shutdown of an idle spare when the
// supervisor closes or discards it.
const spareShutdownWait = time.Second

// spareRefillDelay is how long the refill after a Create that took a spare
// waits. Starting a spare (fork and exec of berth-shim, its Go runtime
// starting) costs some 3-4 ms of CPU; started at once, it lands where a
// short task (`berthctl run --rm`) exits and is deleted, and on 2 CPUs
// competes with that path. bench/daemonbench -ref against the refill at
// once (2 CPUs, load 1.5-3.8, 20-40 rounds): run --rm 0.89-0.95 of it in
// six runs with this build in the berthd slot, 0.96-1.01 in five with it
// in the reference slot (A/A 1.00, 1.01); after the shim's deferred
// delete moved to its shutdown, 0.92-0.99 in four, both slots. Runs back
// to back gain nothing (1.03, 0.93, 1.03, 1.04): a fifth of their
// Creates come within the delay and find the pool empty (against 2-5 in
// 100), and such a Create has the pool refilled at once (takeSpare). So
// the delete of a task cuts the delay short (refillAfterDelete,
// spareRefillAfterDelete). See bench/README.md.
const spareRefillDelay = 50 * time.Millisecond

// spareRefillAfterDelete is how long the refill waits after the delete of
// a task, when that comes first: the run that took the spare is over, but
// its client still has calls to make (a `run --rm` deletes its container
// and exits, 5-7 ms after the task's delete here), which a spare started
// at the delete competed with for the CPU. It is short enough that a loop
// of runs finds the spare ready: the next Create comes 15 ms or more after
// the delete, and a spare takes about 5 ms to start. Measured with
// alternating single `berthctl run --rm IMAGE` of this build and of the
// refill at the delete (150 pairs, both orders): 0.94 and 0.96 of its
// time; runs back to back (8 blocks of 10): 1.00 and 1.00.
const spareRefillAfterDelete = 8 * time.Millisecond

// spare is a shim started ahead of need: started by us (shimlaunch), serving in its own
// folder under StateDir/.spare, connected, and bound to no task. Create
// takes one, writes the bundle's files into its folder, renames the folder
// to the bundle and binds the shim in the Create call itself. A spare
// holds no container state: see the package documentation.
type spare struct {
	dir  string
	conn *conn
	// owner is the task the spare was handed to, for the error classes of
	// its calls; nil while idle.
	owner atomic.Pointer[Shim]
}

// callErrors is the spare connection's innermost interceptor: once the
// spare belongs to a task, its calls fail as that task's do.
func (sp *spare) callErrors(ctx context.Context, req *ttrpc.Request, resp *ttrpc.Response, info *ttrpc.UnaryClientInfo, invoker ttrpc.Invoker) error {
	if sh := sp.owner.Load(); sh != nil {
		return sh.callErrors(ctx, req, resp, info, invoker)
	}
	return invoker(ctx, req, resp)
}

// alive reports whether the spare's connection is still open.
func (sp *spare) alive() bool {
	select {
	case <-sp.conn.closed:
		return false
	default:
		return true
	}
}

// startSpares starts keeping Config.SpareShims spares ready, once per
// supervisor.
func (s *Supervisor) startSpares() {
	s.sparesOnce.Do(func() {
		if s.cfg.SpareShims > 0 {
			s.goroutine(s.fillSpares)
		}
	})
}

// removeStaleSpares kills any spare of an earlier daemon that still
// serves (one whose daemon died while it started) and removes every spare
// folder: spares exit with the daemon that started them, but their folders
// stay. It runs once, before this supervisor starts any spare.
func (s *Supervisor) removeStaleSpares() {
	s.staleOnce.Do(s.removeStaleSparesOnce)
}

func (s *Supervisor) removeStaleSparesOnce() {
	root := filepath.Join(s.cfg.StateDir, spareDir)
	entries, err := os.ReadDir(root)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("read spare shims folder", "error", err)
		}
		return
	}
	for _, e := range entries {
		dir := filepath.Join(root, e.Name())
		killSpare(dir)
		if err := os.RemoveAll(dir); err != nil {
			s.log.Warn("remove folder of an earlier daemon's spare shim", "path", dir, "error", err)
		}
	}
}

// killSpare kills the spare serving dir, if one does (its pid file names a
// shim serving that folder: pids are reused).
func killSpare(dir string) {
	if pid, err := shimapi.ReadPidFile(dir); err == nil && shimapi.ServesBundle(pid, dir) {
		unix.Kill(pid, unix.SIGKILL)
	}
}

// fillSpares is the one goroutine that starts spares: it keeps the pool
// full, one spare at a time, off the path of any Create, until the
// supervisor closes, and then shuts the idle ones down. It owns the delay
// of a refill (see spareRefillDelay), so that Close ends it too.
func (s *Supervisor) fillSpares() {
	defer s.closeSpares()
	b := newBackoff(100*time.Millisecond, 30*time.Second)
	for {
		// Only this goroutine adds to the pool, so it cannot be full
		// between the check and the send.
		for len(s.spares) < cap(s.spares) {
			sp, err := s.newSpare(s.ctx)
			if err != nil {
				if s.ctx.Err() != nil {
					return
				}
				s.log.Warn("start spare shim; Create starts shims itself meanwhile", "error", err)
				if b.wait(s.ctx) != nil {
					return
				}
				continue
			}
			b.reset()
			s.spares <- sp
		}
		delay := s.refillDelay
		select {
		case <-s.refillNow:
			continue
		case <-s.refill:
		case <-s.refillSoon:
			delay = s.refillSoonDelay
		case <-s.ctx.Done():
			return
		}
		if !s.waitRefillDelay(delay) {
			return
		}
		// A spare taken during the delay is refilled now with the rest.
		select {
		case <-s.refill:
		default:
		}
	}
}

// waitRefillDelay waits delay, or refillSoonDelay from a task's delete
// that comes meanwhile when that is sooner; a Create that finds the pool
// empty ends the wait at once. It returns false when the supervisor
// closes.
func (s *Supervisor) waitRefillDelay(delay time.Duration) bool {
	due := time.Now().Add(delay)
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return true
		case <-s.refillNow:
			return true
		case <-s.refillSoon:
			if soon := time.Now().Add(s.refillSoonDelay); soon.Before(due) {
				due = soon
				t.Reset(s.refillSoonDelay)
			}
		case <-s.ctx.Done():
			return false
		}
	}
}

// newSpare starts a spare shim in a new folder and connects to it.
func (s *Supervisor) newSpare(ctx context.Context) (_ *spare, retErr error) {
	root := filepath.Join(s.cfg.StateDir, spareDir)
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(root, "")
	if err != nil {
		return nil, err
	}
	sp := &spare{dir: dir}
	defer func() {
		if retErr != nil {
			s.discardSpare(sp)
		}
	}()
	// It becomes a bundle: the mode bundles have (writeBundleFiles sets
	// the one its spec asks for when it is bound).
	if err := os.Chmod(dir, bundlePerm); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	// The spare exits with us until it is bound: it watches a pidfd of
	// ours.
	self, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd of berthd for a spare shim: %w", err)
	}
	daemon := os.NewFile(uintptr(self), "daemon-pidfd")
	defer daemon.Close()
	// One process start, not `berth-shim start --spare`'s two: the serving
	// shim is our child (in its own session) until we exit; we reap it
	// when it exits before us.
	p, err := shimlaunch.Start(ctx, shimlaunch.Config{
		Binary:  s.cfg.ShimBinary,
		Folder:  dir,
		Args:    []string{"--spare", "--bundle", dir},
		Daemon:  daemon,
		Timeout: startTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("start spare shim: %w", err)
	}
	p.Reap()
	c, err := openConn(ctx, dir, "", s.cfg.CallTimeout, sp.callErrors)
	if err != nil {
		return nil, fmt.Errorf("connect to spare shim: %w", err)
	}
	sp.conn = c
	return sp, nil
}

// takeSpare returns an idle spare that still lives, or nil. The caller
// calls refillSpares once its container is created: a shim started while
// the runtime creates the container would compete with it for the CPU.
// When the pool is empty, it has fillSpares refill it at once, a delayed
// refill pending or not: the caller starts a shim itself, and the next
// Create should find one.
func (s *Supervisor) takeSpare() *spare {
	if cap(s.spares) == 0 {
		return nil
	}
	for {
		select {
		case sp := <-s.spares:
			if sp.alive() {
				return sp
			}
			s.log.Warn("spare shim died while idle", "path", sp.dir)
			s.discardSpare(sp)
		default:
			wake(s.refillNow)
			return nil
		}
	}
}

// refillAfterDelete cuts a pending refill delay short once a task is
// deleted, to spareRefillAfterDelete: the run that took the spare is over
// but for its client's last calls.
func (s *Supervisor) refillAfterDelete() {
	if cap(s.spares) == 0 || len(s.spares) == cap(s.spares) {
		return
	}
	wake(s.refillSoon)
}

// refillSpares has fillSpares start spares until the pool is full, after
// spareRefillDelay.
func (s *Supervisor) refillSpares() {
	if cap(s.spares) == 0 {
		return
	}
	wake(s.refill)
}

// wake sends on ch, a channel of capacity 1, unless a send is pending
// already.
func wake(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// discardSpare shuts an idle spare down, kills it should it still serve
// (it holds nothing, so nothing is lost), and removes its folder.
func (s *Supervisor) discardSpare(sp *spare) {
	if sp.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), spareShutdownWait)
		sp.conn.task.Shutdown(ctx, &shimapi.ShutdownRequest{})
		cancel()
		sp.conn.client.Close()
	}
	killSpare(sp.dir)
	if err := os.RemoveAll(sp.dir); err != nil {
		s.log.Warn("remove spare shim folder", "path", sp.dir, "error", err)
	}
}

// closeSpares shuts down the idle spares when the supervisor closes: they
// would exit with the daemon anyway, but a supervisor may close in a
// process that goes on.
func (s *Supervisor) closeSpares() {
	for {
		select {
		case sp := <-s.spares:
			s.discardSpare(sp)
		default:
			return
		}
	}
}

// bindSpare turns the spare's folder into the bundle of sh: the bundle's
// files are written into it, marked creating, and it is renamed to the
// bundle, which must not exist. Until the rename the folder is the
// spare's; after it, the bundle holds a creating marker from its first
// moment, as writeBundle's does.
func (sh *Shim) bindSpare(sp *spare, spec []byte, runtime string) error {
	if err := writeBundleFiles(sp.dir, spec, runtime, sh.stdio); err != nil {
		return err
	}
	if err := fsperm.Restrict(filepath.Dir(sh.Bundle), namespacePerm); err != nil {
		return err
	}
	if err := unix.Renameat2(unix.AT_FDCWD, sp.dir, unix.AT_FDCWD, sh.Bundle, unix.RENAME_NOREPLACE); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("bundle %s: %w", sh.Bundle, errdefs.ErrAlreadyExists)
		}
		return &os.LinkError{Op: "rename", Old: sp.dir, New: sh.Bundle, Err: err}
	}
	sp.owner.Store(sh)
	return nil
}
