package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/internal/testutil"
)

// exitCoder is the exit of a remote command as client-go reports it
// (k8s.io/utils/exec's ExitError).
type exitCoder interface {
	error
	ExitStatus() int
}

// fixedSize is a terminal size queue that reports one size, then ends.
type fixedSize struct {
	once sync.Once
	size remotecommand.TerminalSize
}

func (f *fixedSize) Next() *remotecommand.TerminalSize {
	var s *remotecommand.TerminalSize
	f.once.Do(func() { s = &f.size })
	return s
}

// TestCRIStreaming execs in a container through the URLs the CRI returns,
// with client-go's SPDY and WebSocket executors (stdin, stdout, stderr,
// exit code; a tty and its size), attaches to a container's stdin and
// output, and forwards a port to a web server in the pod.
func TestCRIStreaming(t *testing.T) {
	e := newCRIEnv(t)
	podCfg := e.podConfig(t, "stream", false)
	pod := e.runPod(t, podCfg)
	t.Cleanup(func() {
		ctx := context.Background()
		e.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod})
		e.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod})
	})
	web := e.startContainer(t, pod, podCfg, "web", "sh", "-c", "mkdir -p /www && echo pong > /www/index.html && exec httpd -f -p 8080 -h /www")

	execURL := func(t *testing.T, req *runtimeapi.ExecRequest) *url.URL {
		t.Helper()
		r, err := e.rt.Exec(e.ctx(t), req)
		if err != nil {
			t.Fatalf("exec: %v", err)
		}
		u, err := url.Parse(r.Url)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(u.Host, "127.0.0.1:") {
			t.Errorf("stream URL %s: want loopback by default", u)
		}
		return u
	}
	executors := map[string]func(t *testing.T, u *url.URL) remotecommand.Executor{
		"spdy": func(t *testing.T, u *url.URL) remotecommand.Executor {
			ex, err := remotecommand.NewSPDYExecutor(&rest.Config{}, http.MethodPost, u)
			if err != nil {
				t.Fatal(err)
			}
			return ex
		},
		// The CRI's stream server speaks the channel protocols up to v4 over
		// WebSocket (k8s.io/cri-streaming); v5 is the API server's, which
		// reaches a node's runtime by SPDY.
		"websocket": func(t *testing.T, u *url.URL) remotecommand.Executor {
			ex, err := remotecommand.NewWebSocketExecutorForProtocols(&rest.Config{}, http.MethodGet, u.String(), "v4.channel.k8s.io")
			if err != nil {
				t.Fatal(err)
			}
			return ex
		},
	}
	for name, newExecutor := range executors {
		t.Run(name+" stdin stdout stderr exit code", func(t *testing.T) {
			u := execURL(t, &runtimeapi.ExecRequest{
				ContainerId: web, Stdin: true, Stdout: true, Stderr: true,
				Cmd: []string{"sh", "-c", "read line; echo got $line; echo oops >&2; exit 3"},
			})
			var stdout, stderr testutil.Buffer
			err := newExecutor(t, u).StreamWithContext(e.ctx(t), remotecommand.StreamOptions{
				Stdin: strings.NewReader("hello\n"), Stdout: &stdout, Stderr: &stderr,
			})
			var ec exitCoder
			if !errors.As(err, &ec) || ec.ExitStatus() != 3 {
				t.Errorf("err %v, want exit code 3", err)
			}
			if stdout.String() != "got hello\n" || stderr.String() != "oops\n" {
				t.Errorf("stdout %q stderr %q", stdout.String(), stderr.String())
			}
		})
		t.Run(name+" tty and resize", func(t *testing.T) {
			u := execURL(t, &runtimeapi.ExecRequest{
				ContainerId: web, Stdin: true, Stdout: true, Tty: true,
				// The size arrives just after the start: wait for it.
				Cmd: []string{"sh", "-c", "for i in $(seq 100); do [ \"$(stty size)\" = '40 100' ] && break; sleep 0.05; done; stty size; tty"},
			})
			var stdout testutil.Buffer
			pr, pw := io.Pipe()
			defer pw.Close()
			err := newExecutor(t, u).StreamWithContext(e.ctx(t), remotecommand.StreamOptions{
				Stdin: pr, Stdout: &stdout, Tty: true,
				TerminalSizeQueue: &fixedSize{size: remotecommand.TerminalSize{Width: 100, Height: 40}},
			})
			if err != nil {
				t.Fatal(err)
			}
			if out := stdout.String(); !strings.Contains(out, "40 100\r\n/dev/pts/") {
				t.Errorf("output %q, want size 40 100 and a pty", out)
			}
		})
	}

	t.Run("exec of a stopped container is refused", func(t *testing.T) {
		_, err := e.rt.Exec(e.ctx(t), &runtimeapi.ExecRequest{ContainerId: "no-such-container", Cmd: []string{"true"}, Stdout: true})
		if err == nil {
			t.Error("exec in a missing container returned a URL")
		}
	})

	t.Run("port forward", func(t *testing.T) {
		if body := e.portForwardGet(t, pod, 8080, "/index.html"); body != "pong\n" {
			t.Errorf("GET through the forward: %q, want pong", body)
		}
	})

	// startAttached starts a container with stdin of cfg and returns it
	// with the URL of an attach to its stdin, stdout and stderr.
	startAttached := func(t *testing.T, cfg *runtimeapi.ContainerConfig) (string, *url.URL) {
		t.Helper()
		ctx := e.ctx(t)
		cfg.Image, cfg.Stdin, cfg.StdinOnce = &runtimeapi.ImageSpec{Image: e.busybox}, true, true
		r, err := e.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: podCfg, Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: r.ContainerId}); err != nil {
			t.Fatal(err)
		}
		a, err := e.rt.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: r.ContainerId, Stdin: true, Stdout: true, Stderr: true})
		if err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(a.Url)
		if err != nil {
			t.Fatal(err)
		}
		return r.ContainerId, u
	}

	// Without a log path (as crictl and critest create containers) the
	// output still reaches an attach: the shim writes it to a file of
	// berthd's, which goes with the container.
	for _, logPath := range []string{"cat.log", ""} {
		name := "attach"
		if logPath == "" {
			name = "attach without a log path"
		}
		t.Run(name, func(t *testing.T) {
			ctx := e.ctx(t)
			id, u := startAttached(t, &runtimeapi.ContainerConfig{
				Metadata: &runtimeapi.ContainerMetadata{Name: "cat" + logPath},
				Command:  []string{"sh", "-c", "while read line; do echo \"out $line\"; echo \"err $line\" >&2; done; echo bye"},
				LogPath:  logPath,
			})
			var stdout, stderr testutil.Buffer
			pr, pw := io.Pipe()
			go func() {
				// Typed after the attach is up: output is followed from then.
				time.Sleep(500 * time.Millisecond)
				io.WriteString(pw, "one\ntwo\n")
				pw.Close()
			}()
			err := executors["spdy"](t, u).StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: pr, Stdout: &stdout, Stderr: &stderr})
			if err != nil {
				t.Fatal(err)
			}
			if stdout.String() != "out one\nout two\nbye\n" || stderr.String() != "err one\nerr two\n" {
				t.Errorf("attach: stdout %q stderr %q", stdout.String(), stderr.String())
			}
			if st := e.waitExited(t, id); st.ExitCode != 0 {
				t.Errorf("exit code %d: want 0 after stdin's end", st.ExitCode)
			}
			if logPath == "" {
				st, err := e.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
				if err != nil || st.GetStatus().GetLogPath() != "" {
					t.Errorf("status: %v, log path %q: want none (the output file is berthd's)", err, st.GetStatus().GetLogPath())
				}
			}
			if _, err := e.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
				t.Fatal(err)
			}
			if out, _ := filepath.Glob(filepath.Join(e.d.state, ".cri", "output", id+"*")); len(out) != 0 {
				t.Errorf("output files left after the container's removal: %v", out)
			}
		})
	}

	// What critest's attach spec does: a shell on stdin prints a word
	// without a newline while stdin stays open; it reaches the attached
	// client then, not at the end of the output.
	t.Run("attach sees output without a newline", func(t *testing.T) {
		ctx := e.ctx(t)
		_, u := startAttached(t, &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "shell"},
			Command:  []string{"/bin/sh"},
		})
		var stdout, stderr testutil.Buffer
		pr, pw := io.Pipe()
		seen := make(chan bool, 1)
		go func() {
			defer pw.Close()
			time.Sleep(500 * time.Millisecond)
			io.WriteString(pw, "echo -n hello\n")
			for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				if stdout.String() == "hello" {
					seen <- true
					return
				}
			}
			seen <- false
		}()
		err := executors["spdy"](t, u).StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: pr, Stdout: &stdout, Stderr: &stderr})
		if err != nil {
			t.Fatal(err)
		}
		if !<-seen {
			t.Errorf("attach: stdout %q while stdin was open, want hello", stdout.String())
		}
		if stdout.String() != "hello" || stderr.String() != "" {
			t.Errorf("attach: stdout %q stderr %q, want hello and nothing", stdout.String(), stderr.String())
		}
	})

	t.Run("output without a log path is bounded", func(t *testing.T) {
		// 3 MiB at once, then quiet: berthd rotates the file past 1 MiB,
		// keeping one rotated file.
		ctx := e.ctx(t)
		r, err := e.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
			PodSandboxId: pod, SandboxConfig: podCfg,
			Config: &runtimeapi.ContainerConfig{
				Metadata: &runtimeapi.ContainerMetadata{Name: "chatty"},
				Image:    &runtimeapi.ImageSpec{Image: e.busybox},
				Command:  []string{"sh", "-c", "yes 0123456789abcdef | head -c 3145728; exec sleep 600"},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		id := r.ContainerId
		if _, err := e.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(e.d.state, ".cri", "output", id+".log")
		var size int64 = -1
		for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			st, err := os.Stat(out)
			if err != nil {
				continue
			}
			size = st.Size()
			if _, err := os.Stat(out + ".1"); err == nil && size < 1<<20 {
				return
			}
		}
		t.Errorf("output file %s: size %d and no rotated file, want it rotated past 1 MiB", out, size)
	})
}

// TestCRICheckpointUnimplemented: CheckpointContainer says plainly that
// berth does not checkpoint, with the Unimplemented code.
func TestCRICheckpointUnimplemented(t *testing.T) {
	e := newCRIEnv(t)
	podCfg := e.podConfig(t, "ckpt", false)
	pod := e.runPod(t, podCfg)
	t.Cleanup(func() {
		ctx := context.Background()
		e.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod})
		e.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod})
	})
	id := e.startContainer(t, pod, podCfg, "sleeper", "sleep", "600")
	_, err := e.rt.CheckpointContainer(e.ctx(t), &runtimeapi.CheckpointContainerRequest{ContainerId: id, Location: t.TempDir() + "/ckpt.tar"})
	if status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), "does not checkpoint") {
		t.Errorf("checkpoint: %v, want Unimplemented saying why", err)
	}
}

// portForwardGet forwards a loopback port to port in pod through the CRI's
// PortForward URL (SPDY, as kubectl does) and returns the body of an HTTP
// GET of path through it, retried a bounded while as the server may still
// be starting.
func (e *criEnv) portForwardGet(t *testing.T, pod string, port int32, path string) string {
	t.Helper()
	r, err := e.rt.PortForward(e.ctx(t), &runtimeapi.PortForwardRequest{PodSandboxId: pod, Port: []int32{port}})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(r.Url)
	if err != nil {
		t.Fatal(err)
	}
	transport, upgrader, err := spdy.RoundTripperFor(&rest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	stop, ready := make(chan struct{}), make(chan struct{})
	var logs testutil.Buffer
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("0:%d", port)}, stop, ready, &logs, &logs)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- fw.ForwardPorts() }()
	defer func() { close(stop); <-done }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("port forward: %v\n%s", err, logs.String())
	case <-e.ctx(t).Done():
		t.Fatal("port forward not ready")
	}
	ports, err := fw.GetPorts()
	if err != nil {
		t.Fatal(err)
	}
	var body string
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", ports[0].Local, path))
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if body = string(b); resp.StatusCode == http.StatusOK {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if body == "" {
		t.Logf("port forward logs: %s", logs.String())
	}
	return body
}
