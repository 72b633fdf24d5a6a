package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/identifiers"
	"github.com/berthrt/berth/shimapi"
)

// Defaults for the zero values of Config.
const (
	DefaultRuntime        = "runc"
	DefaultDialTimeout    = 100 * time.Millisecond
	DefaultRestoreTimeout = 5 * time.Second
	// DefaultCleanupTimeout bounds one `berth-shim delete` run.
	DefaultCleanupTimeout = 30 * time.Second
)

// runcDir is the folder under StateDir that holds the runtime's state roots,
// one per namespace. A dot name cannot be a namespace.
const runcDir = ".runc"

// maxConcurrentCleanups bounds the `berth-shim delete` processes run at
// once, so that a restore after many shims died does not fork a storm.
const maxConcurrentCleanups = 4

// Config is what a Supervisor needs.
type Config struct {
	// StateDir holds the bundles, StateDir/<namespace>/<id>, and the
	// runtime's state, StateDir/.runc/<namespace>. Socket paths longer
	// than sockaddr_un allows are reached through /proc/self/fd (see
	// internal/unixsock).
	StateDir string
	// ShimBinary is the path of berth-shim.
	ShimBinary string
	// Runtime is the default OCI runtime, a name in PATH or a path
	// (default "runc").
	Runtime string
	// Events receives every shim event.
	Events EventHandler
	// Log is the logger (default slog.Default()).
	Log *slog.Logger
	// DialTimeout bounds the dial and the Connect call to one shim on
	// restore (default 100ms). A missing socket or a refused connection
	// fails at once whatever the bound.
	DialTimeout time.Duration
	// RestoreTimeout bounds how long Restore waits for every shim to be
	// classified; slower ones go on in the background (default 5s).
	RestoreTimeout time.Duration
	// CleanupTimeout bounds one run of `berth-shim delete` (default 30s).
	CleanupTimeout time.Duration
	// CallTimeout bounds every call to a shim whose context has no
	// deadline, except Wait and the Events stream, which last as long as
	// the task (default DefaultCallTimeout). A caller's own deadline, or
	// its cancellation, bounds a call first.
	CallTimeout time.Duration
	// SpareShims is how many spare shims are kept started and connected,
	// bound to no task, for Create to take instead of starting one; 0
	// starts none. They are started once Restore (or the wait that
	// StartRestore returns) has classified the shims found.
	SpareShims int
}

// EventHandler takes the events of every shim.
type EventHandler interface {
	// Forward publishes one shim event of task (ns, id). It is called in
	// sequence order per shim, never concurrently for one shim; the event
	// is acknowledged to the shim only after Forward returned nil, and
	// retried with backoff after an error, except an error of class
	// errdefs.ErrInvalidArgument, which drops the event. An envelope with Seq 0 was made
	// by the supervisor (the exit of a shim that died, the delete of a
	// stopped task), not by the shim.
	Forward(ctx context.Context, ns, id string, env *shimapi.Envelope) error
}

// Supervisor starts, finds and watches the shims of one daemon.
type Supervisor struct {
	cfg Config
	log *slog.Logger

	// ctx is cancelled by Close; every goroutine of the supervisor and its
	// shims ends when it is done, and wg counts them.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	cleanups chan struct{} // semaphore: one token per running `berth-shim delete`

	spares      chan *spare   // idle spares; cap is Config.SpareShims; only fillSpares sends
	refill      chan struct{} // wakes fillSpares after a spare was taken: refill after refillDelay
	refillNow   chan struct{} // wakes fillSpares when Create found the pool empty: refill at once
	refillSoon  chan struct{} // wakes fillSpares after a task's delete: refill after refillSoonDelay
	refillDelay time.Duration // spareRefillDelay; tests set it before Restore
	// refillSoonDelay is spareRefillAfterDelete; tests set it before
	// Restore.
	refillSoonDelay time.Duration
	// asideDelay is asideShutdownDelay and asideExitWait is
	// asideExitWait; tests set them before Restore and Delete.
	asideDelay    time.Duration
	asideExitWait time.Duration
	sparesOnce    sync.Once // startSpares
	staleOnce     sync.Once // removeStaleSpares
	asideOnce     sync.Once // removeAsideBundles

	sweepFIFOsOnce sync.Once // sweepFIFOs, after the first Restore

	mu    sync.Mutex    // guards shims, asides and closed
	shims map[key]*Shim // every task known, whatever its state
	// asides holds the deleted tasks whose shims have not exited yet,
	// their bundles set aside (aside.go). A new task of the same name
	// hurries the shim's shutdown and waits for its exit (addWhenFree).
	asides map[key]*aside
	closed bool
}

// key names a task.
type key struct{ ns, id string }

// New returns a supervisor for cfg. It starts nothing: call Restore to find
// the shims of an earlier daemon.
func New(cfg Config) (*Supervisor, error) {
	if cfg.StateDir == "" || !filepath.IsAbs(cfg.StateDir) {
		return nil, fmt.Errorf("supervisor: state dir %q must be an absolute path: %w", cfg.StateDir, errdefs.ErrInvalidArgument)
	}
	if cfg.ShimBinary == "" {
		return nil, fmt.Errorf("supervisor: no shim binary: %w", errdefs.ErrInvalidArgument)
	}
	if cfg.Events == nil {
		return nil, fmt.Errorf("supervisor: no event handler: %w", errdefs.ErrInvalidArgument)
	}
	cfg.StateDir = filepath.Clean(cfg.StateDir)
	if cfg.Runtime == "" {
		cfg.Runtime = DefaultRuntime
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.RestoreTimeout <= 0 {
		cfg.RestoreTimeout = DefaultRestoreTimeout
	}
	if cfg.SpareShims < 0 {
		return nil, fmt.Errorf("supervisor: spare shims %d: %w", cfg.SpareShims, errdefs.ErrInvalidArgument)
	}
	if cfg.CleanupTimeout <= 0 {
		cfg.CleanupTimeout = DefaultCleanupTimeout
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Supervisor{
		cfg:             cfg,
		log:             cfg.Log.With("component", "supervisor"),
		ctx:             ctx,
		cancel:          cancel,
		cleanups:        make(chan struct{}, maxConcurrentCleanups),
		spares:          make(chan *spare, cfg.SpareShims),
		refill:          make(chan struct{}, 1),
		refillNow:       make(chan struct{}, 1),
		refillSoon:      make(chan struct{}, 1),
		refillDelay:     spareRefillDelay,
		refillSoonDelay: spareRefillAfterDelete,
		shims:           make(map[key]*Shim),
		asideDelay:      asideShutdownDelay,
		asideExitWait:   asideExitWait,
		asides:          make(map[key]*aside),
	}, nil
}

// Get returns the task (ns, id): running, stopped, or still being restored.
// It returns an error wrapping errdefs.ErrNotFound when there is none.
func (s *Supervisor) Get(ns, id string) (*Shim, error) {
	s.mu.Lock()
	sh := s.shims[key{ns, id}]
	s.mu.Unlock()
	if sh == nil || !sh.visible() {
		return nil, fmt.Errorf("task %s/%s: %w", ns, id, errdefs.ErrNotFound)
	}
	return sh, nil
}

// Has reports whether a task (ns, id) is registered in any state, also
// while Create is still making it (which Get does not show).
func (s *Supervisor) Has(ns, id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.shims[key{ns, id}] != nil
}

// List returns the tasks of namespace ns, sorted by id.
func (s *Supervisor) List(ns string) []*Shim {
	s.mu.Lock()
	var out []*Shim
	for k, sh := range s.shims {
		if k.ns == ns && sh.visible() {
			out = append(out, sh)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b *Shim) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// All returns the tasks of every namespace.
func (s *Supervisor) All() []*Shim {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Shim, 0, len(s.shims))
	for _, sh := range s.shims {
		if sh.visible() {
			out = append(out, sh)
		}
	}
	return out
}

// Close stops the supervisor's goroutines and closes its connections. It
// does not stop any shim or container: the daemon may be restarting. A
// cleanup after a dead shim that Close interrupts is done again by the next
// Restore.
func (s *Supervisor) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// add registers sh unless a task of that name exists or the supervisor is
// closed.
func (s *Supervisor) add(sh *Shim) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("supervisor closed: %w", errdefs.ErrUnavailable)
	}
	k := key{sh.Namespace, sh.ID}
	if _, ok := s.shims[k]; ok {
		return fmt.Errorf("task %s/%s: %w", sh.Namespace, sh.ID, errdefs.ErrAlreadyExists)
	}
	s.shims[k] = sh
	return nil
}

// addWhenFree is add for a new task: while a deleted task of the same name
// is still being set aside (its shim, which may still be deleting the
// runtime's container, has not exited), it waits for that first, bounded
// by ctx, so that the new task never meets the old one's runtime state.
func (s *Supervisor) addWhenFree(ctx context.Context, sh *Shim) error {
	k := key{sh.Namespace, sh.ID}
	for {
		s.mu.Lock()
		a, pending := s.asides[k]
		s.mu.Unlock()
		if !pending {
			return s.add(sh)
		}
		a.hurryUp()
		select {
		case <-a.gone:
		case <-ctx.Done():
			return fmt.Errorf("task %s/%s: the deleted task of that name is still being released: %w", sh.Namespace, sh.ID, ctx.Err())
		}
	}
}

// remove forgets sh (only sh: a newer task of the same name stays).
func (s *Supervisor) remove(sh *Shim) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removeLocked(sh)
}

// removeLocked is remove with s.mu held.
func (s *Supervisor) removeLocked(sh *Shim) {
	k := key{sh.Namespace, sh.ID}
	if s.shims[k] == sh {
		delete(s.shims, k)
	}
}

// goroutine runs fn on a goroutine that Close waits for. It reports false,
// running nothing, once Close has begun.
func (s *Supervisor) goroutine(fn func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
	return true
}

// bundle returns the bundle folder of (ns, id).
func (s *Supervisor) bundle(ns, id string) string { return filepath.Join(s.cfg.StateDir, ns, id) }

// runtimeRoot returns the runtime's state root for namespace ns.
func (s *Supervisor) runtimeRoot(ns string) string {
	return filepath.Join(s.cfg.StateDir, runcDir, ns)
}

// runtimeState returns the runtime's state folder of the container (ns, id).
func (s *Supervisor) runtimeState(ns, id string) string { return s.runtimeRoot(ns) + "/" + id }

// forward hands env to the event handler, retrying with backoff until it
// succeeds or ctx ends.
func (s *Supervisor) forward(ctx context.Context, ns, id string, env *shimapi.Envelope) error {
	b := newBackoff(50*time.Millisecond, 5*time.Second)
	for {
		err := s.cfg.Events.Forward(ctx, ns, id, env)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return errors.Join(err, ctx.Err())
		}
		if errdefs.IsInvalidArgument(err) {
			// No retry can make it valid (an event kind of a newer shim,
			// say): drop it, or it would hold up every later event of
			// the shim, its exit included, for as long as the shim lives.
			s.log.Error("dropping shim event that cannot be published", "namespace", ns, "id", id, "topic", env.Topic, "seq", env.Seq, "error", err)
			return nil
		}
		s.log.Warn("forward event failed; retrying", "namespace", ns, "id", id, "topic", env.Topic, "seq", env.Seq, "error", err)
		if err := b.wait(ctx); err != nil {
			return err
		}
	}
}

func validateName(ns, id string) error {
	if err := identifiers.Validate(ns); err != nil {
		return fmt.Errorf("namespace: %w", err)
	}
	if err := identifiers.Validate(id); err != nil {
		return fmt.Errorf("task id: %w", err)
	}
	return nil
}

// backoff is a doubling pause with a cap.
type backoff struct{ first, next, max time.Duration }

func newBackoff(first, max time.Duration) *backoff {
	return &backoff{first: first, next: first, max: max}
}

// reset starts over with the first interval.
func (b *backoff) reset() { b.next = b.first }

// wait pauses for the next interval, or until ctx ends.
func (b *backoff) wait(ctx context.Context) error {
	t := time.NewTimer(b.next)
	defer t.Stop()
	b.next = min(2*b.next, b.max)
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
