package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/berthrt/berth/shimapi"
	"github.com/berthrt/berth/task"
	runc "github.com/containerd/go-runc"
	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"
)

// Descriptors inherited from start.
const (
	listenerFD = 3
	readyFD    = 4
)

// gcPercent keeps an idle shim's heap small: it allocates little after
// start, so collecting sooner costs next to nothing.
const gcPercent = 25

// maxProcs is the shim's GOMAXPROCS unless the environment sets one. The
// shim mostly waits on the runtime and on pipes; every P costs its own
// caches and GC work buffers, and more Ps mean more threads: one P kept an
// idle shim 0.3 MiB smaller than two, at no measurable cost in latency.
const maxProcs = 1

// serve is the long-lived shim.
func serve(ctx context.Context, o *options) error {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(maxProcs)
	}
	debug.SetGCPercent(gcPercent)
	logf, err := os.OpenFile(filepath.Join(o.bundle, shimapi.LogFileName), os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	level := slog.LevelInfo
	if o.debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewJSONHandler(logf, &slog.HandlerOptions{Level: level})).With("namespace", o.namespace, "id", o.id)
	slog.SetDefault(log)

	// go-runc writes process specs and console sockets to a temporary
	// folder named by XDG_RUNTIME_DIR: keep them in the bundle when its path
	// leaves room for a socket name (sockaddr_un holds 107 bytes).
	if len(o.bundle) <= 80 {
		os.Setenv("XDG_RUNTIME_DIR", o.bundle)
	}
	// Terminal signals mean nothing to a detached shim.
	signal.Ignore(unix.SIGHUP, unix.SIGINT, unix.SIGPIPE)

	lf := os.NewFile(listenerFD, "shim-listener")
	l, err := net.FileListener(lf)
	lf.Close()
	if err != nil {
		return fmt.Errorf("inherited listener: %w", err)
	}
	ready := os.NewFile(readyFD, "shim-ready")

	stop := make(chan struct{})
	reaper := task.NewReaper()
	if err := reaper.Run(stop); err != nil {
		return err
	}
	runc.Monitor = reaper

	done := make(chan struct{})
	svc, err := task.NewService(task.Config{
		Namespace: o.namespace, ID: o.id, Bundle: o.bundle,
		Runtime: o.runtime, RuntimeRoot: o.runtimeRoot,
		Logger:   log,
		Shutdown: func() { close(done) },
	}, reaper)
	if err != nil {
		return err
	}
	server, err := ttrpc.NewServer(
		ttrpc.WithServerHandshaker(ttrpc.UnixSocketRequireSameUser()),
		ttrpc.WithUnaryServerInterceptor(shimapi.ServerErrors),
	)
	if err != nil {
		return err
	}
	shimapi.RegisterTaskService(server, svc)
	if err := shimapi.WriteFileAtomic(filepath.Join(o.bundle, shimapi.PidFileName), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return err
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- server.Serve(ctx, l) }()
	// The listener queues connections already; from here calls are served.
	fmt.Fprintln(ready, readyMessage)
	ready.Close()
	log.Info("serving", "pid", os.Getpid(), "runtime", o.runtime)

	select {
	case <-done:
		log.Info("shutdown")
	case err := <-serveErr:
		log.Error("server stopped", "error", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	server.Shutdown(sctx)
	svc.Close()
	close(stop)
	os.Remove(shimapi.SocketPath(o.bundle))
	os.Remove(filepath.Join(o.bundle, shimapi.PidFileName))
	return nil
}
