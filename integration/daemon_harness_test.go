package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/internal/unixsock"
	"github.com/berthrt/berth/io/cio"
	"github.com/berthrt/berth/namespaces"
	"github.com/berthrt/berth/oci"
	containersv1 "github.com/berthrt/berth/proto/containers/v1"
	eventsv1 "github.com/berthrt/berth/proto/events/v1"
	introspectionv1 "github.com/berthrt/berth/proto/introspection/v1"
	namespacesv1 "github.com/berthrt/berth/proto/namespaces/v1"
	tasksv1 "github.com/berthrt/berth/proto/tasks/v1"
	versionv1 "github.com/berthrt/berth/proto/version/v1"
	"github.com/berthrt/berth/shimapi"
)

// daemon is a berthd of one test, with its own root, state folder, socket
// and config. Cleanup kills it, then every shim and container it left,
// and removes its folders and cgroups.
type daemon struct {
	t                    *testing.T
	bin                  string // the berthd binary started by start
	shim                 string
	root, state, address string
	config               string
	env                  []string // added to the test's environment
	cmd                  *exec.Cmd
	log                  *os.File
	namespacesUsed       sync.Map
}

// daemonOpt changes what newDaemon configures.
type daemonOpt func(*daemonConfig)

type daemonConfig struct {
	dataRoot string   // the config's root; default <d.root>/lib
	env      []string // added to the daemon's environment
	extra    string   // appended to the config file
	runtime  string   // keys added to the [runtime] table
}

// withConfig appends extra to the daemon's config file: tables other
// than the harness's own ([cri], [registry], …).
func withConfig(extra string) daemonOpt {
	return func(c *daemonConfig) { c.extra += extra }
}

// withRuntimeConfig adds keys ("key = value" lines) to the [runtime]
// table, which the harness writes itself.
func withRuntimeConfig(keys string) daemonOpt {
	return func(c *daemonConfig) { c.runtime += keys }
}

// withDataRoot makes dir the daemon's root (metadata, content,
// snapshots), for a test that needs it on a filesystem of its own. The
// caller must have made dir before newDaemon, so that the folder outlives
// the daemon's cleanup.
func withDataRoot(dir string) daemonOpt {
	return func(c *daemonConfig) { c.dataRoot = dir }
}

// withEnv adds variables ("KEY=value") to the daemon's environment.
func withEnv(env ...string) daemonOpt {
	return func(c *daemonConfig) { c.env = append(c.env, env...) }
}

// newDaemon prepares and starts a daemon.
func newDaemon(t *testing.T, opts ...daemonOpt) *daemon {
	t.Helper()
	testutil.RequireRoot(t, "runc", "busybox")
	d := &daemon{t: t, bin: testutil.Binary(t, "berthd"), shim: testutil.Binary(t, "berth-shim"), root: t.TempDir()}
	dc := daemonConfig{dataRoot: filepath.Join(d.root, "lib")}
	for _, o := range opts {
		o(&dc)
	}
	d.env = dc.env
	// The state folder holds unix sockets: keep its path short.
	state, err := os.MkdirTemp("/run", "bt-")
	if err != nil {
		t.Fatal(err)
	}
	d.state = state
	d.address = filepath.Join(state, "berth.sock")
	d.config = filepath.Join(d.root, "config.toml")
	cfg := fmt.Sprintf("version = 1\nroot = %q\nstate = %q\n[api]\naddress = %q\n[log]\nlevel = \"debug\"\n[runtime]\nshim = %q\n%s",
		dc.dataRoot, d.state, d.address, d.shim, dc.runtime)
	cfg += dc.extra
	if err := os.WriteFile(d.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	log, err := os.Create(filepath.Join(d.root, "berthd.log"))
	if err != nil {
		t.Fatal(err)
	}
	d.log = log
	t.Cleanup(d.cleanup)
	d.start()
	return d
}

// start runs d.bin and waits until it answers a health check.
func (d *daemon) start() {
	d.t.Helper()
	d.cmd = exec.Command(d.bin, "--config", d.config)
	d.cmd.Env = append(os.Environ(), d.env...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		c, err := d.dial()
		if err == nil {
			_, err = introspectionv1.NewHealthClient(c).Check(context.Background(), &emptypb.Empty{})
			c.Close()
			if err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("berthd did not become ready: %v\n%s", err, d.logs())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitRestored waits until the daemon's health says SERVING: its Restore,
// which goes on in the background once it serves (start returns while the
// health says RESTORING), has dealt with every bundle of the daemon before,
// also removed those of creates that daemon did not finish. A kill before
// that leaves such a bundle, its shim killed, for the next Restore.
func (d *daemon) waitRestored() {
	d.t.Helper()
	eventually(d.t, time.Minute, "berthd's restore to finish", func() bool {
		c, err := d.dial()
		if err != nil {
			return false
		}
		defer c.Close()
		resp, err := introspectionv1.NewHealthClient(c).Check(context.Background(), &emptypb.Empty{})
		return err == nil && resp.GetStatus() == introspectionv1.HealthResponse_SERVING
	})
}

// kill SIGKILLs the daemon, as a crash would.
func (d *daemon) kill() {
	d.t.Helper()
	if d.cmd == nil {
		return
	}
	d.cmd.Process.Kill()
	d.cmd.Wait()
	d.cmd = nil
}

func (d *daemon) logs() string {
	data, _ := os.ReadFile(d.log.Name())
	return string(data)
}

func (d *daemon) dial() (*ttrpc.Client, error) {
	conn, err := unixsock.Dial(context.Background(), d.address)
	if err != nil {
		return nil, err
	}
	return ttrpc.NewClient(conn, ttrpc.WithUnaryClientInterceptor(errdefs.ClientErrors)), nil
}

// api is a connection to the daemon with every service's client.
type api struct {
	conn          *ttrpc.Client
	namespaces    namespacesv1.NamespacesClient
	containers    containersv1.ContainersClient
	tasks         tasksv1.TasksService
	events        eventsv1.EventsClient
	introspection introspectionv1.IntrospectionService
	version       versionv1.VersionService
}

func (d *daemon) api() *api {
	d.t.Helper()
	c, err := d.dial()
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { c.Close() })
	return &api{
		conn:          c,
		namespaces:    namespacesv1.NewNamespacesClient(c),
		containers:    containersv1.NewContainersClient(c),
		tasks:         tasksv1.NewTasksClient(c),
		events:        eventsv1.NewEventsClient(c),
		introspection: introspectionv1.NewIntrospectionClient(c),
		version:       versionv1.NewVersionClient(c),
	}
}

// client returns a client library connection to d with default namespace
// ns, closed at the end of the test.
func (d *daemon) client(t *testing.T, ns string) *client.Client {
	t.Helper()
	c, err := client.New(d.address, client.WithDefaultNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// creator is cio.NewCreator for the given streams and options, with the
// FIFOs where cio.DefaultFIFODir is for a daemon with the default state
// folder, so that a restarting daemon must leave them alone.
func (d *daemon) creator(stdin io.Reader, stdout, stderr io.Writer, opts ...cio.Opt) cio.Creator {
	dir := filepath.Join(d.state, filepath.Base(cio.DefaultFIFODir))
	return cio.NewCreator(append([]cio.Opt{cio.WithStreams(stdin, stdout, stderr), cio.WithFIFODir(dir)}, opts...)...)
}

// nsContext returns a context in namespace ns, remembered for cleanup.
func (d *daemon) nsContext(ns string) context.Context {
	d.namespacesUsed.Store(ns, true)
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	d.t.Cleanup(cancel)
	return namespaces.WithNamespace(c, ns)
}

// bundle returns the bundle folder of task id in namespace ns.
func (d *daemon) bundle(ns, id string) string { return filepath.Join(d.state, ns, id) }

// cleanup kills the daemon, then removes every task it left with
// `berth-shim delete` (which kills shims and containers and unmounts), and
// the folders.
func (d *daemon) cleanup() {
	if d.t.Failed() {
		d.t.Logf("berthd log:\n%s", tail(d.logs(), 60))
	}
	d.kill()
	d.shutDownAsideShims()
	bundles, _ := filepath.Glob(filepath.Join(d.state, "*", "*", "config.json"))
	more, _ := filepath.Glob(filepath.Join(d.state, "*", "*", shimapi.ExitFileName))
	seen := map[string]bool{}
	for _, p := range append(bundles, more...) {
		b := filepath.Dir(p)
		if seen[b] {
			continue
		}
		seen[b] = true
		ns, id := filepath.Base(filepath.Dir(b)), filepath.Base(b)
		cmd := exec.Command(d.shim, "delete", "--namespace", ns, "--id", id, "--bundle", b,
			"--runtime-root", filepath.Join(d.state, ".runc", ns))
		if out, err := cmd.CombinedOutput(); err != nil {
			d.t.Logf("cleanup %s/%s: %v: %s", ns, id, err, out)
		}
	}
	d.log.Close()
	// Spares exit once they see the daemon gone: give them a moment.
	left := shimsUnder(d.state)
	for end := time.Now().Add(time.Minute); len(left) > 0 && time.Now().Before(end); left = shimsUnder(d.state) {
		time.Sleep(20 * time.Millisecond)
	}
	for _, pid := range left {
		d.t.Errorf("cleanup: shim %d still serves from a folder of the daemon's state", pid)
		unix.Kill(pid, unix.SIGKILL)
	}
	unmountUnder(d.t, d.state)
	if err := os.RemoveAll(d.state); err != nil {
		d.t.Errorf("cleanup: %v", err)
	}
	d.namespacesUsed.Range(func(ns, _ any) bool {
		removeCgroups(ns.(string))
		return true
	})
}

// shutDownAsideShims tells the shims of tasks deleted just before the
// daemon was killed to shut down, as a restarted daemon would: they serve
// on from the set-aside folders until then (supervisor's aside.go), and
// run the runtime's delete of their container before they exit. It waits,
// bounded, for their exit.
func (d *daemon) shutDownAsideShims() {
	dirs, _ := filepath.Glob(filepath.Join(d.state, ".deleted", "*"))
	for _, dir := range dirs {
		pid, err := shimapi.ReadPidFile(dir)
		if err != nil || !alive(pid) {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		shimapi.ShutdownNow(ctx, dir)
		cancel()
		for end := time.Now().Add(10 * time.Second); alive(pid) && time.Now().Before(end); {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// shimsUnder returns the berth-shim processes whose working folder (a
// shim works in its bundle) is below dir, removed or not.
func shimsUnder(dir string) []int {
	var pids []int
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		cwd, err := os.Readlink(filepath.Join(p, "cwd"))
		if err != nil || !strings.HasPrefix(cwd, dir+"/") {
			continue
		}
		if comm, _ := os.ReadFile(filepath.Join(p, "comm")); strings.TrimSpace(string(comm)) != "berth-shim" {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(p)); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// unmountUnder detaches every mount below dir (a pod's shm, a pinned
// network namespace) that a failed test left, deepest first.
func unmountUnder(t *testing.T, dir string) {
	mounts := mountsUnder(dir)
	slices.SortFunc(mounts, func(a, b string) int { return len(b) - len(a) })
	for _, m := range mounts {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
			t.Logf("cleanup: unmount %s: %v", m, err)
		}
	}
}

// cgroupHierarchies returns the folders a cgroup path is found under:
// each hierarchy of cgroup v1 (and the unified one beside them), or the
// root of cgroup v2.
func cgroupHierarchies() []string {
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*")
	return append(hierarchies, "/sys/fs/cgroup")
}

// removeCgroups removes the empty cgroups runc leaves above containers of
// namespace ns: /berth/<ns> and /berth, in every hierarchy.
func removeCgroups(ns string) {
	for _, h := range cgroupHierarchies() {
		os.Remove(filepath.Join(h, "berth", ns))
		os.Remove(filepath.Join(h, "berth")) // fails, harmlessly, while in use
	}
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// containerSpec is a spec running args on the shared busybox rootfs,
// read-only, with extra spec options.
func containerSpec(t *testing.T, ns, id string, args []string, opts ...oci.SpecOpts) []byte {
	t.Helper()
	all := append([]oci.SpecOpts{oci.WithRootFSPath(busyboxLower(t)), oci.WithRootFSReadonly, oci.WithProcessArgs(args...)}, opts...)
	spec, err := oci.GenerateSpec(context.Background(), ns, id, all...)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// run creates container id and its task with no stdio, and starts it.
func (a *api) run(t *testing.T, ctx context.Context, id string, args []string, opts ...oci.SpecOpts) uint32 {
	t.Helper()
	ns, _ := namespaces.Namespace(ctx)
	if _, err := a.containers.Create(ctx, &containersv1.CreateContainerRequest{Container: &containersv1.Container{
		Id: id, Spec: containerSpec(t, ns, id, args, opts...),
	}}); err != nil {
		t.Fatalf("create container %s: %v", id, err)
	}
	if _, err := a.tasks.Create(ctx, &tasksv1.CreateTaskRequest{ContainerId: id}); err != nil {
		t.Fatalf("create task %s: %v", id, err)
	}
	resp, err := a.tasks.Start(ctx, &tasksv1.StartRequest{ContainerId: id})
	if err != nil {
		t.Fatalf("start task %s: %v", id, err)
	}
	return resp.Pid
}

// wait waits for the init process of id and returns its exit status.
func (a *api) wait(t *testing.T, ctx context.Context, id string) uint32 {
	t.Helper()
	resp, err := a.tasks.Wait(ctx, &tasksv1.WaitRequest{ContainerId: id})
	if err != nil {
		t.Fatalf("wait %s: %v", id, err)
	}
	return resp.ExitStatus
}

// subscription collects events in the background.
type subscription struct {
	mu     sync.Mutex
	events []*eventsv1.Envelope
	err    error
	done   chan struct{}
}

func (a *api) subscribe(t *testing.T, req *eventsv1.SubscribeRequest) *subscription {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := a.events.Subscribe(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	s := &subscription{done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			env, err := stream.Recv()
			s.mu.Lock()
			if err != nil {
				if ctx.Err() == nil {
					s.err = err
				}
				s.mu.Unlock()
				return
			}
			s.events = append(s.events, env)
			s.mu.Unlock()
		}
	}()
	return s
}

// matching returns the events received so far for which keep is true.
func (s *subscription) matching(keep func(*eventsv1.Envelope) bool) []*eventsv1.Envelope {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*eventsv1.Envelope
	for _, e := range s.events {
		if keep(e) {
			out = append(out, e)
		}
	}
	return out
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mountsUnder returns the mount points below dir.
func mountsUnder(dir string) []string {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, l := range bytes.Split(data, []byte("\n")) {
		f := strings.Fields(string(l))
		if len(f) > 4 && strings.HasPrefix(f[4], dir) {
			out = append(out, f[4])
		}
	}
	return out
}
