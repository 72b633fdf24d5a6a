package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthrt/berth/bench/internal/berthd"
	"github.com/berthrt/berth/bench/internal/daemon"
	"github.com/berthrt/berth/bench/internal/proc"
	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/internal/spantrace"
	"github.com/berthrt/berth/io/cio"
	"github.com/berthrt/berth/oci"
	containersv1 "github.com/berthrt/berth/proto/containers/v1"
	introspectionv1 "github.com/berthrt/berth/proto/introspection/v1"
	tasksv1 "github.com/berthrt/berth/proto/tasks/v1"
	"github.com/berthrt/berth/shimapi"
)

const (
	// setupWorkers is how many containers are started or removed at once
	// when the benchmark prepares a state; not measured.
	setupWorkers = 4
	// cleanupTimeout bounds the final teardown through a daemon.
	cleanupTimeout = 2 * time.Minute
)

// berth is a berthd of the benchmark's own, with its root, state and
// socket in the workspace, and the berthctl that drives it.
type berth struct {
	d       *daemon.Process
	ctlBin  string // berthctl binary
	runtime string // OCI runtime binary, absolute
	address string
	state   string
	ns      string
	rootfs  string
	fifoDir string         // FIFOs of the client library path
	env     []string       // added to berthctl's environment
	client  *client.Client // while the daemon serves: setup, teardown, the library path
	everRan bool           // a daemon was started, so there may be something to clean
}

// newBerth writes the config file of a daemon named name (its state is
// <w.run>/<name>) that runs the binaries of bins; it starts nothing.
// With untraced, neither the daemon, its shims nor berthctl trace.
func newBerth(w *workspace, name string, bins config, untraced bool) (*berth, error) {
	b := &berth{
		ctlBin:  bins.berthctl,
		runtime: bins.runtime,
		address: filepath.Join(w.run, name, "berth.sock"),
		state:   filepath.Join(w.run, name),
		ns:      w.ns,
		rootfs:  w.rootfs,
		fifoDir: filepath.Join(w.run, name+"-fifo"),
	}
	if untraced {
		b.env = []string{spantrace.Env + "="}
	}
	root := filepath.Join(w.dir, "berth-"+name)
	conf := filepath.Join(w.dir, "berthd-"+name+".toml")
	if err := (berthd.Config{Root: root, State: b.state, Address: b.address, Runtime: bins.runtime, Shim: bins.shim}).Write(conf); err != nil {
		return nil, err
	}
	b.d = daemon.New("berthd "+name, filepath.Join(w.dir, "berthd-"+name+".log"), bins.berthd, "--config", conf)
	b.d.Env = b.env
	return b, nil
}

// start starts berthd and waits until it serves, then connects the client.
func (b *berth) start(ctx context.Context) (readyTimes, error) {
	started := time.Now()
	if err := b.d.Start(); err != nil {
		return readyTimes{}, err
	}
	b.everRan = true
	rt, err := b.waitReady(ctx, started)
	if err != nil {
		return rt, err
	}
	if b.client, err = client.New(b.address, client.WithDefaultNamespace(b.ns)); err != nil {
		return rt, err
	}
	return rt, nil
}

// restart kills berthd with SIGKILL, starts it again and times it until it
// serves. Its shims and containers keep running throughout.
func (b *berth) restart(ctx context.Context) (readyTimes, error) {
	b.closeClient()
	b.d.Kill()
	return b.start(ctx)
}

func (b *berth) closeClient() {
	if b.client != nil {
		b.client.Close()
		b.client = nil
	}
}

// waitReady polls the Health service: the first answer of any kind is
// when the socket answers; SERVING (not RESTORING) is when every shim of
// the previous daemon was reconnected.
func (b *berth) waitReady(ctx context.Context, started time.Time) (readyTimes, error) {
	var rt readyTimes
	deadline := started.Add(daemon.ReadyTimeout)
	for {
		switch {
		case ctx.Err() != nil:
			return rt, ctx.Err()
		case b.d.Exited():
			return rt, b.d.Failure("exited before it served")
		case time.Now().After(deadline):
			return rt, b.d.Failure(fmt.Sprintf("did not serve within %v", daemon.ReadyTimeout))
		}
		conn, err := net.Dial("unix", b.address)
		if err != nil {
			time.Sleep(pollInterval)
			continue
		}
		serving := pollHealth(ctx, conn, started, &rt, deadline)
		if serving {
			return rt, nil
		}
	}
}

// pollHealth calls Check over one connection until it answers SERVING
// (true), the connection fails or the deadline passes (false).
func pollHealth(ctx context.Context, conn net.Conn, started time.Time, rt *readyTimes, deadline time.Time) bool {
	tc := ttrpc.NewClient(conn)
	defer tc.Close()
	health := introspectionv1.NewHealthClient(tc)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := health.Check(cctx, &emptypb.Empty{})
		cancel()
		if err != nil {
			return false
		}
		if rt.answered == 0 {
			rt.answered = time.Since(started)
		}
		if resp.Status == introspectionv1.HealthResponse_SERVING {
			rt.serving = time.Since(started)
			return true
		}
		time.Sleep(pollInterval)
	}
	return false
}

// ctlCommand returns berthctl with the daemon's address and the run's
// namespace before args; its output goes to out.
func (b *berth) ctlCommand(out io.Writer, args ...string) (*exec.Cmd, context.CancelFunc) {
	cmd, cancel := proc.Command(b.ctlBin, append([]string{"--address", b.address, "--namespace", b.ns}, args...)...)
	cmd.Stdout, cmd.Stderr = out, out
	if b.env != nil {
		cmd.Env = append(os.Environ(), b.env...)
	}
	return cmd, cancel
}

// ctl runs berthctl and returns its output.
func (b *berth) ctl(args ...string) (string, error) {
	var out bytes.Buffer
	cmd, cancel := b.ctlCommand(&out, args...)
	defer cancel()
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("berthctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// runOnce times `berthctl run --rm --rootfs DIR ID /bin/true`, what a user
// types, from the fork of berthctl to its exit.
// The window is the run on the monotonic clock of package spantrace.
func (b *berth) runOnce(id string) (time.Duration, window, error) {
	var out bytes.Buffer
	cmd, cancel := b.ctlCommand(&out, "run", "--rm", "--rootfs", b.rootfs, id, "/bin/true")
	defer cancel()
	start := time.Now()
	win := window{fork: spantrace.Now()}
	err := cmd.Run()
	win.exit = spantrace.Now()
	elapsed := time.Since(start)
	if err != nil {
		return 0, win, fmt.Errorf("berthctl run --rm %s: %w: %s", id, err, strings.TrimSpace(out.String()))
	}
	return elapsed, win, nil
}

// libraryOnce times what `berthctl run --rm` does, through the client
// library in this process: NewContainer, NewTask started at once (FIFOs
// for stdout and stderr, as berthctl makes), Wait, the exit, Delete of the task
// and of the container. The difference to runOnce is berthctl's own
// process: exec, Go runtime and package init, connect.
func (b *berth) libraryOnce(ctx context.Context, id string) (time.Duration, error) {
	start := time.Now()
	ctr, err := b.client.NewContainer(ctx, id, client.WithNewSpec(oci.WithRootFSPath(b.rootfs), oci.WithProcessArgs("/bin/true")))
	if err != nil {
		return 0, err
	}
	task, err := ctr.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, io.Discard, io.Discard), cio.WithFIFODir(b.fifoDir)), client.WithTaskStart, client.WithSpecRootFS)
	if err != nil {
		return 0, err
	}
	exitc, err := task.Wait(ctx)
	if err != nil {
		return 0, err
	}
	code, _, err := (<-exitc).Result()
	if err != nil {
		return 0, err
	}
	task.IO().Wait()
	if _, err := task.Delete(ctx); err != nil {
		return 0, err
	}
	if err := ctr.Delete(ctx); err != nil {
		return 0, err
	}
	elapsed := time.Since(start)
	if code != 0 {
		return 0, fmt.Errorf("container %s: /bin/true exited with %d", id, code)
	}
	return elapsed, nil
}

// runDetached starts a `sleep 3600` container for every id with
// `berthctl run -d`, setupWorkers at a time.
func (b *berth) runDetached(ctx context.Context, ids []string) error {
	return parallel(ctx, ids, func(id string) error {
		_, err := b.ctl("run", "-d", "--rootfs", b.rootfs, id, "/bin/sleep", "3600")
		return err
	})
}

// checkRunning verifies with `tasks ls`, run through cli (berthctl or
// ctr), that every id has a RUNNING task, and returns how many do.
func checkRunning(name string, cli func(...string) (string, error), ids []string) (int, error) {
	out, err := cli("tasks", "ls")
	if err != nil {
		return 0, err
	}
	if err := allRunning(out, ids); err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return len(ids), nil
}

// allRunning checks a task table (a header line, then the id in the first
// column and the status in the third, as berthctl and ctr print it) for a
// RUNNING task of every id.
func allRunning(table string, ids []string) error {
	status := map[string]string{}
	for _, line := range strings.Split(table, "\n")[1:] {
		if f := strings.Fields(line); len(f) >= 3 {
			status[f[0]] = f[2]
		}
	}
	var missing []string
	for _, id := range ids {
		if status[id] != "RUNNING" {
			missing = append(missing, fmt.Sprintf("%s: %q", id, status[id]))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("after restart, %d of %d tasks are not RUNNING: %s", len(missing), len(ids), strings.Join(missing, ", "))
	}
	return nil
}

// shimPids returns the pids of the run's berth-shims.
func (b *berth) shimPids() []int { return berthd.ShimPids(b.state, b.ns) }

// teardown kills and removes every task and container of the run's
// namespace as a user would: `berthctl tasks kill -s KILL`, `tasks rm`,
// `containers rm`, setupWorkers commands at a time. Tasks' FIFOs that
// berthctl leaves behind are removed, and reported.
func (b *berth) teardown(ctx context.Context) error {
	resp, err := b.client.TaskService().List(ctx, &tasksv1.ListTasksRequest{})
	if err != nil {
		return fmt.Errorf("list tasks: %w", err)
	}
	var all, running, fifos []string
	for _, p := range resp.Tasks {
		all = append(all, p.ContainerId)
		if p.Status != shimapi.Status_STATUS_STOPPED {
			running = append(running, p.ContainerId)
		}
		if st := p.GetStdio(); st != nil {
			fifos = append(fifos, st.Stdin, st.Stdout, st.Stderr)
		}
	}
	// A task that exits by itself meanwhile refuses the kill; rm -f then
	// waits for each task to stop before it removes it.
	parallel(ctx, running, func(id string) error {
		b.ctl("tasks", "kill", "-s", "KILL", id)
		return nil
	})
	if err := parallel(ctx, chunks(all), func(ids []string) error {
		_, err := b.ctl(append([]string{"tasks", "rm", "-f"}, ids...)...)
		return err
	}); err != nil {
		return err
	}
	cresp, err := b.client.ContainerService().List(ctx, &containersv1.ListContainersRequest{})
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	var ctrs []string
	for _, c := range cresp.Containers {
		ctrs = append(ctrs, c.Id)
	}
	if err := parallel(ctx, chunks(ctrs), func(ids []string) error {
		_, err := b.ctl(append([]string{"containers", "rm"}, ids...)...)
		return err
	}); err != nil {
		return err
	}
	if left := removeFIFOs(fifos); len(left) > 0 {
		progress("warning: berthctl left %d FIFOs of removed tasks (now removed), e.g. %s", len(left), left[0])
	}
	return nil
}

// chunkSize is how many ids one berthctl command removes.
const chunkSize = 25

// chunks splits ids into slices of at most chunkSize.
func chunks(ids []string) [][]string {
	var out [][]string
	for len(ids) > chunkSize {
		out = append(out, ids[:chunkSize])
		ids = ids[chunkSize:]
	}
	if len(ids) > 0 {
		out = append(out, ids)
	}
	return out
}

// removeFIFOs removes the FIFOs at paths that still exist, and their
// folders once empty; it returns the paths it found.
func removeFIFOs(paths []string) []string {
	var left []string
	for _, p := range paths {
		if p == "" {
			continue
		}
		if st, err := os.Lstat(p); err != nil || st.Mode()&fs.ModeNamedPipe == 0 {
			continue
		}
		left = append(left, p)
		os.Remove(p)
		os.Remove(filepath.Dir(p)) // only when empty
	}
	return left
}

// Close removes every container of the run through the daemon (started
// again if it was killed), stops it, and then sweeps what the API could
// not remove: containers runc still knows of and shims still running,
// which is reported as an error.
func (b *berth) Close() error {
	if !b.everRan {
		return nil
	}
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if b.client == nil {
		b.d.Kill()
		if _, err := b.start(ctx); err != nil {
			errs = append(errs, fmt.Errorf("start berthd for cleanup: %w", err))
		}
	}
	if b.client != nil {
		if err := b.teardown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("berthd teardown: %w", err))
		}
	}
	b.closeClient()
	errs = append(errs, b.d.Stop(), berthd.Sweep(b.runtime, b.state, b.ns))
	b.everRan = false // closed: a second Close has nothing to do
	return errors.Join(errs...)
}

// parallel calls fn for every item, setupWorkers at a time, and returns
// the errors of all calls; it stops starting new calls when ctx ends.
func parallel[T any](ctx context.Context, items []T, fn func(T) error) error {
	var (
		mu   sync.Mutex
		errs []error // guarded by mu
		wg   sync.WaitGroup
	)
	sem := make(chan struct{}, setupWorkers)
	for _, item := range items {
		if ctx.Err() != nil {
			mu.Lock()
			errs = append(errs, ctx.Err())
			mu.Unlock()
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(item); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
