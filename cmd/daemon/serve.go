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
	"github.com/berthrt/berth/internal/fsperm"
	"github.com/berthrt/berth/internal/rpcguard"
	"github.com/berthrt/berth/internal/spantrace"
	"github.com/berthrt/berth/mount"
	"github.com/berthrt/berth/namespaces"
	"github.com/berthrt/berth/services"
	"github.com/berthrt/berth/services/containers"
	contentsvc "github.com/berthrt/berth/services/content"
	diffsvc "github.com/berthrt/berth/services/diff"
	eventsvc "github.com/berthrt/berth/services/events"
	gcsvc "github.com/berthrt/berth/services/gc"
	imagesvc "github.com/berthrt/berth/services/images"
	"github.com/berthrt/berth/services/introspection"
	leasesvc "github.com/berthrt/berth/services/leases"
	nssvc "github.com/berthrt/berth/services/namespaces"
	snapshotsvc "github.com/berthrt/berth/services/snapshots"
	"github.com/berthrt/berth/services/tasks"
	transfersvc "github.com/berthrt/berth/services/transfer"
	"github.com/berthrt/berth/shimapi"
	"github.com/berthrt/berth/storage/content/local"
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

// serve runs the daemon until SIGINT or SIGTERM.
func serve(ctx context.Context, cfg *Config) error {
	level, _ := parseLevel(cfg.Log.Level) // validated with the config
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)
	sd := takeNotifier() // first: no shim may inherit NOTIFY_SOCKET

	// Containers' files are under both folders: no host user but root may
	// reach them (the CVE-2021-41103 class). Folders an earlier release
	// made looser are tightened here.
	if err := fsperm.Restrict(cfg.Root, rootPerm); err != nil {
		return err
	}
	if err := fsperm.Restrict(cfg.State, supervisor.StatePerm); err != nil {
		return err
	}
	shim, err := shimBinary(cfg.Runtime.Shim)
	if err != nil {
		return err
	}
	db, err := metadata.Open(filepath.Join(cfg.Root, "meta.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	// With the database held no other daemon runs on this root: what is
	// mounted in its temporary mount folder was left by a killed one.
	tempMounts := filepath.Join(cfg.Root, tempMountsName)
	if err := mount.CleanupTempMounts(tempMounts); err != nil {
		log.Warn("remove temporary mounts left by an earlier daemon", "folder", tempMounts, "error", err)
	}
	if err := fsperm.Restrict(tempMounts, mount.TempMountPerm); err != nil {
		return err
	}
	contentRoot := filepath.Join(cfg.Root, "content")
	blobs, err := local.NewStore(contentRoot)
	if err != nil {
		return err
	}

	exchange := events.NewExchange()
	sup, err := supervisor.New(supervisor.Config{
		StateDir:   cfg.State,
		ShimBinary: shim,
		Runtime:    cfg.Runtime.Default,
		SpareShims: cfg.Runtime.Spares,
		Events:     forwarder{exchange},
		Log:        log.With("component", "supervisor"),
	})
	if err != nil {
		return err
	}
	defer sup.Close() // leaves every shim running
	mtr, err := openMetrics(cfg, sup)
	if err != nil {
		return err
	}

	apiLimits, _ := cfg.API.limits() // validated with the config
	srv, err := ttrpc.NewServer(slices.Concat([]ttrpc.ServerOpt{
		ttrpc.WithServerHandshaker(rpcguard.Handshaker(allowPeers(cfg.API.UID, cfg.API.GID), apiLimits)),
	}, errdefs.ServerOpts(), spantrace.ServerOpts(), mtr.serverOpts())...)
	if err != nil {
		return err
	}
	var restoring atomic.Bool
	restoring.Store(true)
	nssvc.Register(srv, db.Namespaces(), exchange)
	locks := &services.IDLocks{}
	containers.Register(srv, containers.Config{Store: db.Containers(), Tasks: taskIndex{sup}, Publisher: exchange, DefaultRuntime: cfg.Runtime.Default, Locks: locks})
	tasks.Register(srv, tasks.Config{Containers: db.Containers(), Supervisor: sup, Locks: locks})
	eventsvc.Register(srv, exchange)
	nsContent := db.ContentStore(blobs) // blobs as the namespaces see them
	contentsvc.Register(srv, nsContent)
	diffsvc.Register(srv, diffsvc.Config{Content: nsContent, TempMounts: tempMounts})
	snaps := openSnapshotters(cfg, db, log.With("component", "snapshots"))
	defer snaps.Close()
	snapshotsvc.Register(srv, snaps.service)
	gcInterval, gcDelay, ingestTTL, _ := cfg.GC.durations() // validated with the config
	gcs := metadata.NewGCScheduler(metadata.NewGC(db, blobs, metadata.GCOptions{IngestTTL: ingestTTL, Snapshots: snaps.collectors}),
		metadata.GCSchedulerConfig{Interval: gcInterval, DeleteDelay: gcDelay, Log: log.With("component", "gc"), Collected: mtr.gcCollected()})
	imagesvc.Register(srv, imagesvc.Config{Store: db.Images(), Publisher: exchange, GC: gcs})
	leasesvc.Register(srv, leasesvc.Config{Leases: db.Leases(), GC: gcs})
	gcsvc.Register(srv, gcs)
	registryTimeouts, _ := cfg.Registry.timeouts() // validated with the config
	transfersvc.Register(srv, transfersvc.Config{
		Content: nsContent, Images: db.Images(), Leases: db.Leases(), Publisher: exchange,
		HostsDir: cfg.Registry.ConfigPath, DockerConfig: cfg.Registry.DockerConfig, Timeouts: registryTimeouts, Log: log.With("component", "transfer"),
		Snapshotter: snaps.service.Snapshotter, DefaultSnapshotter: cfg.Snapshotter.Default, TempMounts: tempMounts,
	})
	if n, err := transfersvc.Recover(ctx, db.Namespaces(), db.Leases()); err != nil {
		log.Warn("delete the leases of interrupted transfers", "deleted", n, "error", err)
	} else if n > 0 {
		log.Info("deleted the leases of interrupted transfers", "leases", n)
	}
	if err := introspection.Register(srv, introspection.Config{
		Root: cfg.Root, State: cfg.State, Restoring: &restoring,
		Services: append([]introspection.Service{
			{Type: "berth.service.v1", ID: "namespaces"},
			{Type: "berth.service.v1", ID: "containers"},
			{Type: "berth.service.v1", ID: "tasks", Exports: map[string]string{"state": cfg.State, "runtime": cfg.Runtime.Default, "shim": shim}},
			{Type: "berth.service.v1", ID: "events"},
			{Type: "berth.service.v1", ID: "content", Exports: map[string]string{"root": contentRoot}},
			{Type: "berth.service.v1", ID: "images"},
			{Type: "berth.service.v1", ID: "diff"},
			{Type: "berth.service.v1", ID: "leases"},
			{Type: "berth.service.v1", ID: "transfer", Exports: map[string]string{"hosts_dir": cfg.Registry.ConfigPath}},
			{Type: "berth.service.v1", ID: "gc", Exports: map[string]string{"interval": gcInterval.String(), "delete_delay": gcDelay.String()}},
			{Type: "berth.service.v1", ID: "introspection"},
			{Type: "berth.service.v1", ID: "health"},
			{Type: "berth.service.v1", ID: "version"},
			{Type: "berth.service.v1", ID: "snapshots", Exports: map[string]string{"default": cfg.Snapshotter.Default}},
			{Type: "berth.metadata.v1", ID: "bolt", Exports: map[string]string{"path": filepath.Join(cfg.Root, "meta.db")}},
		}, snaps.introspection...),
	}); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go gcs.Run(ctx)
	mtr.serve(ctx, log.With("component", "metrics"))
	// Register the shims of the previous daemon before serving, so that no
	// call misses a task; reconnect to them while serving: a call for a
	// task waits for its own shim only (Shim.Ready).
	start := time.Now()
	restored, err := sup.StartRestore(ctx)
	if err != nil {
		return fmt.Errorf("restore shims: %w", err)
	}
	l, err := listen(cfg.API.Address, cfg.API.UID, cfg.API.GID)
	if err != nil {
		return err
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ctx, l) }()
	log.Info("berthd serving", "version", version.Version, "address", cfg.API.Address, "root", cfg.Root, "state", cfg.State)
	stopCRI := startCRI(ctx, cfg, srv, log)
	defer stopCRI()
	go func() {
		if err := restored(); err != nil && ctx.Err() == nil {
			log.Error("restore shims", "error", err)
		}
		restoring.Store(false)
		log.Info("shims restored", "duration", time.Since(start))
		mtr.restored(time.Since(start))
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
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
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
