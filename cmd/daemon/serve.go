package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/events"
	"github.com/berthrt/berth/internal/rpcguard"
	"github.com/berthrt/berth/internal/spantrace"
	"github.com/berthrt/berth/namespaces"
	transfersvc "github.com/berthrt/berth/services/transfer"
	"github.com/berthrt/berth/shimapi"
	"github.com/berthrt/berth/storage/metadata"
	"github.com/berthrt/berth/supervisor"
	"github.com/berthrt/berth/version"
)

// rootPerm is the mode of the root folder: only root may enter it.
const rootPerm = 0o700

// tempMountsName is the folder under the root where the diff and transfer
// services mount what they cannot read or write in place.
const tempMountsName = "tmpmounts"

// shutdownTimeout bounds how long a stopping daemon waits for calls in
// flight. Containers are not affected either way.
const shutdownTimeout = 5 * time.Second

// serve runs the daemon until SIGINT or SIGTERM, in three steps: open the
// stores (stores.go), wire the services onto the API server (services.go),
// and run: restore the shims, serve, shut down.
func serve(ctx context.Context, cfg *Config) error {
	level, _ := parseLevel(cfg.Log.Level) // validated with the config
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)
	errdefs.SetPanicLog(func(method, value string, stack []byte) {
		log.Error("panic in a ttrpc handler", "method", method, "panic", value, "stack", string(stack))
	})
	sd := takeNotifier() // first: no shim may inherit NOTIFY_SOCKET

	st, err := openStores(cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()
	d, err := newDaemon(cfg, st, log)
	if err != nil {
		return err
	}
	defer d.sup.Close() // leaves every shim running
	if err := d.registerServices(cfg, st); err != nil {
		return err
	}
	return d.run(ctx, cfg, st, sd)
}

// daemon is what berthd runs over its stores: the event exchange, the
// supervisor of the shims, the API server and the garbage collector.
type daemon struct {
	log       *slog.Logger
	shim      string // berth-shim's path
	exchange  *events.Exchange
	sup       *supervisor.Supervisor
	mtr       *daemonMetrics
	srv       *ttrpc.Server
	gcs       *metadata.GCScheduler
	restoring atomic.Bool // true until every shim of the last daemon is reconnected
}

// newDaemon starts the supervisor (which restores nothing yet) and makes
// the API server and the garbage collector over st.
func newDaemon(cfg *Config, st *stores, log *slog.Logger) (*daemon, error) {
	shim, err := shimBinary(cfg.Runtime.Shim)
	if err != nil {
		return nil, err
	}
	d := &daemon{log: log, shim: shim, exchange: events.NewExchange()}
	d.restoring.Store(true)
	callTimeout, _ := cfg.Runtime.callTimeout() // validated with the config
	d.sup, err = supervisor.New(supervisor.Config{
		StateDir:    cfg.State,
		ShimBinary:  shim,
		Runtime:     cfg.Runtime.Default,
		SpareShims:  cfg.Runtime.Spares,
		CallTimeout: callTimeout,
		Events:      forwarder{d.exchange},
		Log:         log.With("component", "supervisor"),
	})
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*daemon, error) {
		d.sup.Close()
		return nil, err
	}
	if d.mtr, err = openMetrics(cfg, d.sup); err != nil {
		return fail(err)
	}
	apiLimits, _ := cfg.API.limits() // validated with the config
	d.srv, err = ttrpc.NewServer(slices.Concat([]ttrpc.ServerOpt{
		ttrpc.WithServerHandshaker(rpcguard.Handshaker(allowPeers(cfg.API.UID, cfg.API.GID), apiLimits)),
	}, errdefs.ServerOpts(d.mtr.interceptors()...), spantrace.ServerOpts())...)
	if err != nil {
		return fail(err)
	}
	gcInterval, gcDelay, ingestTTL, _ := cfg.GC.durations() // validated with the config
	d.gcs = metadata.NewGCScheduler(metadata.NewGC(st.db, st.blobs, metadata.GCOptions{IngestTTL: ingestTTL, Snapshots: st.snaps.collectors}),
		metadata.GCSchedulerConfig{Interval: gcInterval, DeleteDelay: gcDelay, Log: log.With("component", "gc"), Collected: d.mtr.gcCollected()})
	return d, nil
}

// run deletes the leases of transfers a killed daemon left, restores the
// shims of the previous daemon, serves the API (and the
// CRI) until ctx ends or SIGINT or SIGTERM, and shuts the server down.
// Containers keep running whatever happens here.
func (d *daemon) run(ctx context.Context, cfg *Config, st *stores, sd notifier) error {
	log := d.log
	if n, err := transfersvc.Recover(ctx, st.db.Namespaces(), st.db.Leases()); err != nil {
		log.Warn("delete the leases of interrupted transfers", "deleted", n, "error", err)
	} else if n > 0 {
		log.Info("deleted the leases of interrupted transfers", "leases", n)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go d.gcs.Run(ctx)
	d.mtr.serve(ctx, log.With("component", "metrics"))
	// Register the shims of the previous daemon before serving, so that no
	// call misses a task; reconnect to them while serving: a call for a
	// task waits for its own shim only (Shim.Ready).
	start := time.Now()
	restored, err := d.sup.StartRestore(ctx)
	if err != nil {
		return fmt.Errorf("restore shims: %w", err)
	}
	l, err := listen(cfg.API.Address, cfg.API.UID, cfg.API.GID)
	if err != nil {
		return err
	}
	serveErr := make(chan error, 1)
	srvCtx := d.mtr.serveContext(ctx)
	go func() { serveErr <- d.srv.Serve(srvCtx, l) }()
	log.Info("berthd serving", "version", version.Version, "address", cfg.API.Address, "root", cfg.Root, "state", cfg.State)
	stopCRI := startCRI(srvCtx, cfg, d.srv, log)
	defer stopCRI()
	go func() {
		if err := restored(); err != nil && ctx.Err() == nil {
			log.Error("restore shims", "error", err)
		}
		d.restoring.Store(false)
		log.Info("shims restored", "duration", time.Since(start))
		d.mtr.restored(time.Since(start))
		if err := sd.notify("READY=1\nSTATUS=serving"); err != nil {
			log.Warn("tell the service manager berthd is ready", "error", err)
		}
	}()

	select {
	case err := <-serveErr:
		if err != nil && !errors.Is(err, ttrpc.ErrServerClosed) {
			return fmt.Errorf("serve %s: %w", cfg.API.Address, err)
		}
		return nil
	case <-ctx.Done():
	}
	log.Info("berthd stopping; containers keep running")
	if err := sd.notify("STOPPING=1"); err != nil {
		log.Warn("tell the service manager berthd stops", "error", err)
	}
	stopCRI() // before the services it calls
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := d.srv.Shutdown(sctx); err != nil {
		d.srv.Close()
	}
	os.Remove(cfg.API.Address)
	return nil
}

// listen makes the API socket: a file-based unix socket of mode 0660
// owned by uid:gid. A stale socket left by a killed daemon is replaced; a
// live one means another daemon serves there, which is an error.
func listen(address string, uid, gid int) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(address), 0o711); err != nil {
		return nil, err
	}
	if c, err := net.DialTimeout("unix", address, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("%s: another daemon is serving on this socket", address)
	}
	if err := os.Remove(address); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	// The socket is made under a restrictive umask, so that it is never
	// reachable with wider permissions than 0660, even for an instant.
	old := unix.Umask(0o177)
	l, err := net.Listen("unix", address)
	unix.Umask(old)
	if err != nil {
		return nil, err
	}
	if err := os.Chown(address, uid, gid); err != nil {
		l.Close()
		return nil, err
	}
	if err := os.Chmod(address, 0o660); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// allowPeers accepts the callers the socket's mode admits: root, the
// socket's uid, and members of its gid (primary or supplementary). The
// file mode is the gate; this is the second lock on the door.
func allowPeers(uid, gid int) ttrpc.UnixCredentialsFunc {
	return func(c *unix.Ucred) error {
		if c.Uid == 0 || int(c.Uid) == uid || int(c.Gid) == gid || inGroup(int(c.Pid), gid) {
			return nil
		}
		return fmt.Errorf("uid %d: not allowed to call berthd: %w", c.Uid, unix.EPERM)
	}
}

// inGroup reports whether process pid has gid among its supplementary
// groups.
func inGroup(pid, gid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if groups, ok := strings.CutPrefix(line, "Groups:"); ok {
			for _, g := range strings.Fields(groups) {
				if n, err := strconv.Atoi(g); err == nil && n == gid {
					return true
				}
			}
		}
	}
	return false
}

// shimBinary finds berth-shim: the configured path, else the one next to
// this binary, else PATH.
func shimBinary(configured string) (string, error) {
	if configured != "" {
		return exec.LookPath(configured)
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "berth-shim")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("berth-shim")
	if err != nil {
		return "", fmt.Errorf("berth-shim not found next to berthd nor in PATH; set runtime.shim in the config: %w", err)
	}
	return p, nil
}

// forwarder publishes shim events into the exchange, in the task's
// namespace, with the payload of the envelope's oneof.
type forwarder struct{ exchange *events.Exchange }

func (f forwarder) Forward(ctx context.Context, ns, id string, env *shimapi.Envelope) error {
	payload, err := shimapi.EventPayload(env)
	if err != nil {
		return err
	}
	a, err := anypb.New(payload)
	if err != nil {
		return err
	}
	return f.exchange.Forward(namespaces.WithNamespace(ctx, ns), &events.Envelope{
		Timestamp: env.GetTimestamp().AsTime(),
		Namespace: ns,
		Topic:     env.GetTopic(),
		Event:     a,
	})
}

// taskIndex tells the containers service which containers have a task.
type taskIndex struct{ sup *supervisor.Supervisor }

// A task still being created counts: its container must not go under it.
func (t taskIndex) HasTask(_ context.Context, ns, id string) bool {
	return t.sup.Has(ns, id)
}
