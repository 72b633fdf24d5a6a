package integration

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/fifo"
	"github.com/containerd/ttrpc"

	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/oci"
	"github.com/berthrt/berth/shimapi"
)

var (
	lowerOnce sync.Once
	lowerDir  string
	lowerErr  error
)

// busyboxLower returns a busybox root filesystem shared read-only by every
// test, as the lower layer of each container's overlay.
func busyboxLower(t *testing.T) string {
	t.Helper()
	lowerOnce.Do(func() {
		lowerDir, lowerErr = os.MkdirTemp("", "berth-lower-")
		if lowerErr == nil {
			lowerErr = testutil.MakeBusyboxRootfs("/bin/busybox", lowerDir)
		}
	})
	if lowerErr != nil {
		t.Fatal(lowerErr)
	}
	return lowerDir
}

// shim is a berth-shim started for one test, with a client connected.
type shim struct {
	t           *testing.T
	id          string
	bundle      string
	runtimeRoot string
	runtime     string
	client      *ttrpc.Client
	task        shimapi.TaskClient
}

type shimOpt func(*shim)

func withRuntime(path string) shimOpt { return func(s *shim) { s.runtime = path } }

// startShim makes a bundle whose config.json is built from opts, starts a
// shim for it with `berth-shim start` and connects. Cleanup runs
// `berth-shim delete`, which kills what is left.
func startShim(t *testing.T, id string, specOpts []oci.SpecOpts, opts ...shimOpt) *shim {
	t.Helper()
	testutil.RequireRoot(t, "runc", "busybox")
	dir := t.TempDir()
	s := &shim{t: t, id: id, bundle: filepath.Join(dir, "b"), runtimeRoot: filepath.Join(dir, "runc"), runtime: "runc"}
	for _, o := range opts {
		o(s)
	}
	if err := os.MkdirAll(s.bundle, 0o711); err != nil {
		t.Fatal(err)
	}
	testutil.WriteSpec(t, s.bundle, id, specOpts...)
	out, err := s.shimCmd("start").Output()
	if err != nil {
		t.Fatalf("berth-shim start: %v: %s", err, stderrOf(err))
	}
	if got := strings.TrimSpace(string(out)); got != shimapi.SocketPath(s.bundle) {
		t.Fatalf("start printed %q, want %q", got, shimapi.SocketPath(s.bundle))
	}
	t.Cleanup(func() {
		if s.client != nil {
			s.client.Close()
		}
		if out, err := s.shimCmd("delete").CombinedOutput(); err != nil {
			t.Errorf("berth-shim delete: %v: %s", err, out)
		}
	})
	s.connect()
	return s
}

func (s *shim) shimCmd(verb string) *exec.Cmd {
	return exec.Command(testutil.Binary(s.t, "berth-shim"), verb,
		"--namespace", "test", "--id", s.id, "--bundle", s.bundle,
		"--runtime", s.runtime, "--runtime-root", s.runtimeRoot)
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

func (s *shim) connect() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, task, err := shimapi.Connect(ctx, s.bundle)
	if err != nil {
		s.t.Fatal(err)
	}
	s.client, s.task = c, task
}

func (s *shim) reconnect() {
	s.t.Helper()
	s.client.Close()
	s.connect()
}

// overlay returns rootfs mounts of the shared busybox over a fresh upper.
func (s *shim) overlay() []*shimapi.Mount {
	s.t.Helper()
	upper, work := filepath.Join(s.bundle, "..", "upper"), filepath.Join(s.bundle, "..", "work")
	for _, d := range []string{upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			s.t.Fatal(err)
		}
	}
	return []*shimapi.Mount{{
		Type: "overlay", Source: "overlay",
		Options: []string{"lowerdir=" + busyboxLower(s.t), "upperdir=" + upper, "workdir=" + work},
	}}
}

// create creates the init process with the given stdio.
func (s *shim) create(stdio *shimapi.Stdio) uint32 {
	s.t.Helper()
	resp, err := s.task.Create(ctx(s.t), &shimapi.CreateRequest{Id: s.id, Rootfs: s.overlay(), Stdio: stdio})
	if err != nil {
		s.t.Fatalf("create: %v", err)
	}
	return resp.Pid
}

func (s *shim) start(execID string) uint32 {
	s.t.Helper()
	resp, err := s.task.Start(ctx(s.t), &shimapi.StartRequest{Id: s.id, ExecId: execID})
	if err != nil {
		s.t.Fatalf("start %q: %v", execID, err)
	}
	return resp.Pid
}

func (s *shim) wait(execID string) uint32 {
	s.t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := s.task.Wait(c, &shimapi.WaitRequest{Id: s.id, ExecId: execID})
	if err != nil {
		s.t.Fatalf("wait %q: %v", execID, err)
	}
	return resp.ExitStatus
}

func (s *shim) status(execID string) shimapi.Status {
	s.t.Helper()
	st, err := s.task.State(ctx(s.t), &shimapi.StateRequest{Id: s.id, ExecId: execID})
	if err != nil {
		s.t.Fatalf("state %q: %v", execID, err)
	}
	return st.Status
}

func (s *shim) shimPid() int {
	s.t.Helper()
	resp, err := s.task.Connect(ctx(s.t), &shimapi.ConnectRequest{Id: s.id})
	if err != nil {
		s.t.Fatal(err)
	}
	return int(resp.ShimPid)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// output is the read side of a FIFO, collected in the background.
type output struct {
	path string
	mu   sync.Mutex
	buf  bytes.Buffer
	done chan struct{}
}

// newOutput makes a FIFO and opens its read side, as a client must before
// it asks for the process.
func newOutput(t *testing.T, dir, name string) *output {
	t.Helper()
	o := &output{path: filepath.Join(dir, name), done: make(chan struct{})}
	f, err := fifo.OpenFifo(context.Background(), o.path, syscall.O_RDONLY|syscall.O_CREAT|syscall.O_NONBLOCK, 0o700)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	go func() {
		defer close(o.done)
		b := make([]byte, 4096)
		for {
			n, err := f.Read(b)
			o.mu.Lock()
			o.buf.Write(b[:n])
			o.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return o
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// waitFor waits until the output contains want.
func (o *output) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if strings.Contains(o.String(), want) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("output %s: want %q, have %q", filepath.Base(o.path), want, o.String())
}

// closed waits for EOF: the shim closed its side.
func (o *output) closed(t *testing.T) string {
	t.Helper()
	select {
	case <-o.done:
	case <-time.After(time.Minute):
		t.Fatalf("output %s: no EOF; have %q", filepath.Base(o.path), o.String())
	}
	return o.String()
}

// newInput makes a FIFO for stdin and returns its write side.
func newInput(t *testing.T, dir, name string) (string, io.WriteCloser) {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := fifo.OpenFifo(context.Background(), p, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_NONBLOCK, 0o700)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return p, f
}

// parentOf returns the parent pid of pid.
func parentOf(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "PPid:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	t.Fatalf("no PPid for %d", pid)
	return 0
}
