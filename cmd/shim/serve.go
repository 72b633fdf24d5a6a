package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	runc "github.com/containerd/go-runc"
	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/atomicfile"
	"github.com/berthrt/berth/internal/jsonlog"
	"github.com/berthrt/berth/internal/rpcguard"
	"github.com/berthrt/berth/internal/shimlaunch"
	"github.com/berthrt/berth/internal/spantrace"
	"github.com/berthrt/berth/shimapi"
	"github.com/berthrt/berth/task"
	"github.com/berthrt/berth/task/reaper"
)

// Descriptors inherited from the starter (package shimlaunch).
const (
	listenerFD = shimlaunch.ListenerFD
	readyFD    = shimlaunch.ReadyFD
)

// gcPercent keeps a busy shim's heap small (the first heap goal is
// 4 MiB * GOGC/100): once it collects garbage at all, collecting sooner
// costs next to nothing.
const gcPercent = 25

// firstGCPercent is the shim's GOGC until its first garbage collection,
// which costs an idle shim for good: the runtime's memory outside the heap
// grows by about 0.5 MiB at a process's first collections, and a process
// that has collected once is made to collect again after every 2 idle
// minutes (one that never collected never is), each adding to it until it
// settles 0.4 MiB higher. With gcPercent from the start, the first heap
// goal was 1 MiB and a shim's start-up through berthd crossed it; with 50
// an idle shim never collects. Through berthd, 10 idle shims, mean per
// shim 2 minutes after their start: PSS 1.72 MiB, RSS 6.09 MiB, against
// 2.58 and 6.95 (bench/README.md). A shim that allocates enough to collect
// is busy, and gcPercent applies from its first collection on.
const firstGCPercent = 50

// setGCPercent sets firstGCPercent, and gcPercent once the first garbage
// collection has run: a cleanup of an object nothing refers to runs after
// the collection that finds it unreachable.
func setGCPercent() {
	debug.SetGCPercent(firstGCPercent)
	sentinel := new([2]*byte) // holds pointers: never in a tiny block, whose cleanups may never run
	runtime.AddCleanup(sentinel, func(struct{}) { debug.SetGCPercent(gcPercent) }, struct{}{})
}

// serve is the long-lived shim.
func serve(ctx context.Context, o *options) error {
	switch {
	case os.Getenv(shimlaunch.ProcsDefaultedEnv) != "":
		os.Unsetenv("GOMAXPROCS")
		os.Unsetenv(shimlaunch.ProcsDefaultedEnv)
	case os.Getenv("GOMAXPROCS") == "":
		// Started some other way than by shimlaunch.
		runtime.GOMAXPROCS(shimlaunch.MaxProcs)
	}
	setGCPercent()
	logf, err := os.OpenFile(filepath.Join(o.bundle, shimapi.LogFileName), os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	level := jsonlog.LevelInfo
	if o.debug {
		level = jsonlog.LevelDebug
	}
	log := jsonlog.New(logf, level)
	if !o.spare {
		useBundle(o.bundle)
	}
	errdefs.SetPanicLog(func(method, value string, stack []byte) {
		log.Error("panic in a ttrpc handler", "method", method, "panic", value, "stack", string(stack))
	})
	if err := resetOOMScore(); err != nil {
		log.Warn("keep the daemon's oom_score_adj", "error", err)
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
	r := reaper.New()
	if err := r.Run(stop); err != nil {
		return err
	}
	runc.Monitor = r

	done := make(chan struct{})
	var shutdownOnce sync.Once
	shutdown := func() { shutdownOnce.Do(func() { close(done) }) }
	newService := func(namespace, id, bundle, runtime, runtimeRoot string) (*task.Service, error) {
		return task.NewService(task.Config{
			Namespace: namespace, ID: id, Bundle: bundle,
			Runtime: runtime, RuntimeRoot: runtimeRoot,
			// Relative: the working folder is the bundle, and stays it
			// when the daemon renames the bundle aside (task.Config).
			RuntimeLog: shimapi.RuntimeLogName,
			Logger:     log.With("namespace", namespace, "id", id),
			Shutdown:   shutdown,
		}, r)
	}
	var (
		svc   shimapi.TaskService
		bound func() *task.Service // the task service, nil while a spare is unbound
	)
	if o.spare {
		spare := &spareService{shutdown: shutdown}
		spare.newService = func(namespace, id string, b *shimapi.Binding) (*task.Service, error) {
			useBundle(b.GetBundle())
			log.Info("bound", "namespace", namespace, "id", id, "bundle", b.GetBundle(), "runtime", b.GetRuntime())
			return newService(namespace, id, b.GetBundle(), b.GetRuntime(), b.GetRuntimeRoot())
		}
		if err := watchDaemon(spare, daemonFD, log); err != nil {
			return err
		}
		svc, bound = spare, spare.current
	} else {
		ts, err := newService(o.namespace, o.id, o.bundle, o.runtime, o.runtimeRoot)
		if err != nil {
			return err
		}
		svc, bound = ts, func() *task.Service { return ts }
	}
	server, err := ttrpc.NewServer(slices.Concat([]ttrpc.ServerOpt{
		ttrpc.WithServerHandshaker(rpcguard.Handshaker(ttrpc.UnixSocketRequireSameUser(), rpcguard.DefaultLimits)),
	}, errdefs.ServerOpts(), spantrace.ServerOpts())...)
	if err != nil {
		return err
	}
	shimapi.RegisterTaskService(server, svc)
	if err := atomicfile.WriteVolatile(filepath.Join(o.bundle, shimapi.PidFileName), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return err
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- server.Serve(ctx, l) }()
	// The listener queues connections already; from here calls are served.
	spantrace.Mark("ready")
	fmt.Fprintln(ready, shimlaunch.ReadyMessage)
	ready.Close()
	log.Info("serving", "pid", os.Getpid(), "runtime", o.runtime, "spare", o.spare)
	if o.spare {
		// Idle until bound: the one-time work of a task's first calls
		// is done now rather than on its Create's way.
		go func() {
			defer spantrace.Start("warm").End()
			task.Warm()
		}()
	}

	select {
	case <-done:
		log.Info("shutdown")
	case err := <-serveErr:
		log.Error("server stopped", "error", err)
	}
	span := spantrace.Start("drain")
	drain(server, shutdownDrain)
	span.End()
	// A deferred runtime delete (task/release.go) is no call of a client
	// that hung up: the shim's exit, which frees the task's id in the
	// daemon, waits for it.
	if ts := bound(); ts != nil && !ts.WaitRuntimeDelete(runtimeDeleteWait) {
		log.Error("the runtime's delete after the release still runs; ending it", "waited", runtimeDeleteWait)
	}
	// A runtime call still under way (its caller hung up, so drain did
	// not wait for it) dies with the shim rather than after: orphaned, it
	// would be out of reach of berth-shim delete's tree walk.
	if left := r.EndCommands(killedExitTimeout); len(left) > 0 {
		log.Error("runtime calls still alive after SIGKILL", "pids", left, "waited", killedExitTimeout)
	}
	if ts := bound(); ts != nil {
		ts.Close()
	}
	close(stop)
	// Relative to the working folder, the bundle: a spare's folder may
	// have been renamed to a bundle since it started.
	os.Remove(shimapi.SocketName)
	os.Remove(shimapi.PidFileName)
	return nil
}

// useBundle prepares the process for serving the bundle. go-runc writes
// process specs and console sockets to a temporary folder named by
// XDG_RUNTIME_DIR: keep them in the bundle when its path leaves room for a
// socket name (sockaddr_un holds 107 bytes). The runtime's processes carry
// the bundle in runtimeBundleEnv.
func useBundle(bundle string) {
	if len(bundle) <= 80 {
		os.Setenv("XDG_RUNTIME_DIR", bundle)
	}
	os.Setenv(runtimeBundleEnv, bundle)
}

// runtimeBundleEnv names the bundle in the environment of every runtime
// call of its shim, and so of whatever the runtime starts before it execs
// a container's process (which gets the spec's environment instead): what
// berth-shim delete kills when a shim died and left runtime calls behind.
// The shim's own environment, as /proc shows it, lacks it.
const runtimeBundleEnv = "BERTH_RUNTIME_BUNDLE"

// runtimeDeleteWait bounds how long a stopping shim waits for a deferred
// runtime delete (task.Service.WaitRuntimeDelete).
const runtimeDeleteWait = 4 * time.Second

// shutdownDrain bounds how long a stopping shim waits for its clients to
// take their last replies and hang up.
const shutdownDrain = 2 * time.Second

// drainPoll is how often drain looks for idle connections. The daemon's
// Shutdown call is usually still being answered when drain starts, so the
// shim's exit, which every task delete waits for, lags by up to this much.
const drainPoll = time.Millisecond

// drain stops the server once no call is in flight, or after limit. ttrpc's
// Shutdown looks for idle connections only every 200 ms, which would add
// that much to every task delete; calling it with a short deadline looks
// again every drainPoll.
func drain(server *ttrpc.Server, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), drainPoll)
		err := server.Shutdown(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || time.Now().After(deadline) {
			break
		}
	}
	server.Close()
}

// resetOOMScore gives the shim the kernel's default oom_score_adj, 0.
// berthd.service protects the daemon from the OOM killer (-999); without
// this the shim, and through runc its container, would inherit that, and
// the kernel would kill every other process on the host before a
// container. With it a container's score is 0 unless its spec sets one.
// Raising a score needs no privilege; a spec may still lower a container's
// down to the daemon's (the kernel allows lowering to the minimum a
// privileged writer set, which children inherit).
func resetOOMScore() error {
	const path = "/proc/self/oom_score_adj"
	cur, err := os.ReadFile(path)
	if err != nil || strings.TrimSpace(string(cur)) == "0" {
		return err
	}
	return os.WriteFile(path, []byte("0"), 0)
}
