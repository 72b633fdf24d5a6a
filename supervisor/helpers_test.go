package supervisor_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berthrt/berth/internal/proc"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/mount"
	"github.com/berthrt/berth/oci"
	"github.com/berthrt/berth/shimapi"
	"github.com/berthrt/berth/supervisor"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if lowerDir != "" {
		os.RemoveAll(lowerDir)
	}
	testutil.Cleanup()
	os.Exit(code)
}

var (
	lowerOnce sync.Once
	lowerDir  string
	lowerErr  error
)

// busyboxLower is a busybox root filesystem shared read-only by every
// container of the test process, as the lower layer of its overlay.
func busyboxLower(t *testing.T) string {
	t.Helper()
	lowerOnce.Do(func() {
		lowerDir, lowerErr = os.MkdirTemp("", "berth-sv-lower-")
		if lowerErr == nil {
			lowerErr = testutil.MakeBusyboxRootfs("/bin/busybox", lowerDir)
		}
	})
	if lowerErr != nil {
		t.Fatal(lowerErr)
	}
	return lowerDir
}

// env is one test's state folder, shim binary and scratch space. Its
// cleanup kills every shim and container and unmounts and removes
// everything, also when the test failed.
type env struct {
	t        *testing.T
	ns       string
	stateDir string
	scratch  string
	shim     string
}

func newEnv(t *testing.T, ns string) *env {
	t.Helper()
	testutil.RequireRoot(t, "runc", "busybox")
	// Short: the shim socket's path must fit in sockaddr_un.
	dir, err := os.MkdirTemp("/run", "bs")
	if err != nil {
		t.Fatal(err)
	}
	// The namespace names the containers' cgroups (/berth/<ns>/<id>),
	// which are the host's: a name of this process's own, so that two test
	// runs on one host never share a container's cgroup.
	ns = fmt.Sprintf("%s-%d", ns, os.Getpid())
	e := &env{t: t, ns: ns, stateDir: dir, scratch: t.TempDir(), shim: testutil.Binary(t, "berth-shim")}
	t.Cleanup(e.cleanup)
	return e
}

// cleanup runs `berth-shim delete` for every bundle left (it kills the
// shim and the container and unmounts the rootfs), then removes it all.
func (e *env) cleanup() {
	t := e.t
	nss, _ := os.ReadDir(e.stateDir)
	for _, ns := range nss {
		if !ns.IsDir() || strings.HasPrefix(ns.Name(), ".") {
			continue
		}
		ids, _ := os.ReadDir(filepath.Join(e.stateDir, ns.Name()))
		for _, id := range ids {
			bundle := filepath.Join(e.stateDir, ns.Name(), id.Name())
			if _, err := os.Stat(filepath.Join(bundle, "config.json")); err != nil {
				continue
			}
			cmd := exec.Command(e.shim, "delete", "--namespace", ns.Name(), "--id", id.Name(), "--bundle", bundle,
				"--runtime-root", filepath.Join(e.stateDir, ".runc", ns.Name()))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Logf("cleanup: berth-shim delete %s: %v: %s", bundle, err, out)
			}
		}
	}
	if err := mount.UnmountAll(e.stateDir, syscall.MNT_DETACH); err != nil {
		t.Logf("cleanup: unmount: %v", err)
	}
	if err := os.RemoveAll(e.stateDir); err != nil {
		t.Logf("cleanup: %v", err)
	}
	// The namespace's cgroup folders, once their containers' are gone
	// (rmdir takes only empty ones).
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/berth/" + e.ns)
	for _, dir := range append(dirs, "/sys/fs/cgroup/berth/"+e.ns) {
		if err := syscall.Rmdir(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Logf("cleanup: %v", &fs.PathError{Op: "rmdir", Path: dir, Err: err})
		}
	}
}

// supervisor returns a new supervisor on the env's state folder, closed at
// the end of the test.
func (e *env) supervisor(rec *recorder, opts ...func(*supervisor.Config)) *supervisor.Supervisor {
	e.t.Helper()
	cfg := supervisor.Config{
		StateDir:   e.stateDir,
		ShimBinary: e.shim,
		Events:     rec,
		Log:        slog.New(slog.NewTextHandler(testWriter{e.t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, o := range opts {
		o(&cfg)
	}
	s, err := supervisor.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { s.Close() })
	return s
}

// create creates task id running args on an overlay of busybox.
func (e *env) create(s *supervisor.Supervisor, id string, args ...string) *supervisor.Shim {
	e.t.Helper()
	sh, err := s.Create(ctx(e.t), e.ns, id, e.opts(id, args...))
	if err != nil {
		e.t.Fatalf("create %s: %v", id, err)
	}
	return sh
}

func (e *env) opts(id string, args ...string) supervisor.CreateOpts {
	e.t.Helper()
	spec, err := oci.GenerateSpec(context.Background(), e.ns, id, oci.WithProcessArgs(args...))
	if err != nil {
		e.t.Fatal(err)
	}
	data, err := json.Marshal(spec)
	if err != nil {
		e.t.Fatal(err)
	}
	upper, work := filepath.Join(e.scratch, id, "upper"), filepath.Join(e.scratch, id, "work")
	for _, d := range []string{upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			e.t.Fatal(err)
		}
	}
	return supervisor.CreateOpts{
		Spec: data,
		Rootfs: []*shimapi.Mount{{
			Type: "overlay", Source: "overlay",
			Options: []string{"lowerdir=" + busyboxLower(e.t), "upperdir=" + upper, "workdir=" + work},
		}},
		Stdio: &shimapi.Stdio{},
	}
}

func (e *env) bundle(id string) string { return filepath.Join(e.stateDir, e.ns, id) }

// assertGone checks that nothing of task id is left but its reduced
// bundle: no shim or container process, no mount, no runtime state. A
// deleted task's shim may still be on its way out when Delete returns (its
// bundle set aside), so the processes get a while to exit.
func (e *env) assertGone(id string, pids ...int) {
	e.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for _, pid := range pids {
		for proc.Alive(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if proc.Alive(pid) {
			e.t.Errorf("task %s: process %d still alive", id, pid)
		}
	}
	if m := mountsUnder(e.t, e.bundle(id)); len(m) > 0 {
		e.t.Errorf("task %s: still mounted: %v", id, m)
	}
	if _, err := os.Stat(filepath.Join(e.stateDir, ".runc", e.ns, id)); !os.IsNotExist(err) {
		e.t.Errorf("task %s: runtime state left: %v", id, err)
	}
	for _, name := range []string{"rootfs", shimapi.SocketName, shimapi.PidFileName} {
		if _, err := os.Stat(filepath.Join(e.bundle(id), name)); !os.IsNotExist(err) {
			e.t.Errorf("task %s: %s left in bundle: %v", id, name, err)
		}
	}
}

func start(t *testing.T, sh *supervisor.Shim) {
	t.Helper()
	if _, err := sh.Task().Start(ctx(t), &shimapi.StartRequest{Id: sh.ID}); err != nil {
		t.Fatalf("start %s: %v", sh.ID, err)
	}
}

func wait(t *testing.T, sh *supervisor.Shim) uint32 {
	t.Helper()
	resp, err := sh.Task().Wait(ctx(t), &shimapi.WaitRequest{Id: sh.ID})
	if err != nil {
		t.Fatalf("wait %s: %v", sh.ID, err)
	}
	return resp.ExitStatus
}

func shimPid(t *testing.T, sh *supervisor.Shim) int {
	t.Helper()
	resp, err := sh.Task().Connect(ctx(t), &shimapi.ConnectRequest{Id: sh.ID})
	if err != nil {
		t.Fatalf("connect %s: %v", sh.ID, err)
	}
	return int(resp.ShimPid)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// eventually polls cond every 10ms until it holds or d passed.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	began := time.Now()
	for !cond() {
		if time.Since(began) > d {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(began)
}

func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}

// recorder is an EventHandler that keeps what it is given, and fails the
// next failNext calls.
type recorder struct {
	mu       sync.Mutex
	envs     map[string][]*shimapi.Envelope // guarded by mu: by "ns/id"
	failNext int                            // guarded by mu
	failed   int                            // guarded by mu
}

func newRecorder() *recorder { return &recorder{envs: map[string][]*shimapi.Envelope{}} }

func (r *recorder) Forward(_ context.Context, ns, id string, env *shimapi.Envelope) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failNext > 0 {
		r.failNext--
		r.failed++
		return fmt.Errorf("exchange unavailable (test)")
	}
	r.envs[ns+"/"+id] = append(r.envs[ns+"/"+id], env)
	return nil
}

func (r *recorder) of(ns, id string) []*shimapi.Envelope {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*shimapi.Envelope(nil), r.envs[ns+"/"+id]...)
}

// topics returns the topics received for a task, with the exit status for
// exits: "/tasks/exit:3".
func (r *recorder) topics(ns, id string) []string {
	var out []string
	for _, e := range r.of(ns, id) {
		s := e.Topic
		if x := e.GetExit(); x != nil {
			s += ":" + strconv.Itoa(int(x.ExitStatus))
		}
		if d := e.GetDelete(); d != nil {
			s += ":" + strconv.Itoa(int(d.ExitStatus))
		}
		out = append(out, s)
	}
	return out
}

// count returns how many events of a task have the topic.
func (r *recorder) count(ns, id, topic string) int {
	n := 0
	for _, e := range r.of(ns, id) {
		if e.Topic == topic {
			n++
		}
	}
	return n
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

var _ io.Writer = testWriter{}

func ctxTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// containsArg reports whether a NUL-separated command line has arg.
func containsArg(cmdline []byte, arg string) bool {
	for _, a := range bytes.Split(cmdline, []byte{0}) {
		if string(a) == arg {
			return true
		}
	}
	return false
}

// catches reports whether pid has a handler for sig (/proc/PID/status's
// SigCgt mask): a shell's trap is set. A signal sent to a container's
// init before then is dropped.
func catches(pid int, sig syscall.Signal) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if mask, ok := strings.CutPrefix(line, "SigCgt:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(mask), 16, 64)
			return err == nil && m&(1<<(uint(sig)-1)) != 0
		}
	}
	return false
}
