package integration

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/shimapi"
)

// TestCRIRestartDrill SIGKILLs berthd with three pods on the CNI bridge;
// while it is down one container exits (code 7) and one container's shim
// is killed. After the restart every pod and container is listed with the
// same id, state, IP and network namespace; logs go on in the same files;
// ExecSync, a streaming exec and a port forward work; the container that
// exited reports its code and reason; the one whose shim died is reported
// exited with a reason and can be removed. The figures go to the test log.
func TestCRIRestartDrill(t *testing.T) {
	e := newCRIEnv(t)
	ctx := e.ctx(t)
	quit := t.TempDir() // a container exits once a file appears here
	type podInfo struct {
		id, ip, netns string
		cfg           *runtimeapi.PodSandboxConfig
		web           string
	}
	var pods []*podInfo
	var quitter, victim string
	for i := range 3 {
		cfg := e.podConfig(t, fmt.Sprintf("drill%d", i), false)
		p := &podInfo{cfg: cfg, id: e.runPod(t, cfg)}
		t.Cleanup(func() {
			ctx := context.Background()
			e.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.id})
			e.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.id})
		})
		p.web = e.startContainer(t, p.id, cfg, "web", "sh", "-c",
			"mkdir -p /www && echo pong > /www/index.html && httpd -p 8080 -h /www && i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.1; done")
		st, err := e.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.id, Verbose: true})
		if err != nil {
			t.Fatal(err)
		}
		p.ip = st.Status.GetNetwork().GetIp()
		p.netns = st.Info["info"]
		pods = append(pods, p)
	}
	// Pod 1: a container that exits 7 once told to (while berthd is down).
	r, err := e.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: pods[1].id, SandboxConfig: pods[1].cfg,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "quitter"},
			Image:    &runtimeapi.ImageSpec{Image: e.busybox},
			Command:  []string{"sh", "-c", "while [ ! -e /quit/now ]; do sleep 0.05; done; exit 7"},
			Mounts:   []*runtimeapi.Mount{{ContainerPath: "/quit", HostPath: quit}},
			LogPath:  "quitter.log",
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	quitter = r.ContainerId
	if _, err := e.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: quitter}); err != nil {
		t.Fatal(err)
	}
	// Pod 2: a container whose shim dies while berthd is down.
	victim = e.startContainer(t, pods[2].id, pods[2].cfg, "victim", "sleep", "1000")

	states := func() map[string]runtimeapi.ContainerState {
		r, err := e.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]runtimeapi.ContainerState{}
		for _, c := range r.Containers {
			out[c.Id] = c.State
		}
		return out
	}
	before := states()
	logPath := filepath.Join(pods[0].cfg.LogDirectory, "web.log")
	eventually(t, time.Minute, "web's log has ticks", func() bool { return len(readCRILog(t, logPath)) > 3 })

	// The crash, and what happens while berthd is down.
	e.d.kill()
	linesDown := len(readCRILog(t, logPath))
	if err := os.WriteFile(filepath.Join(quit, "now"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	shimPid, err := os.ReadFile(filepath.Join(e.d.bundle("k8s.io", victim), shimapi.PidFileName))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(shimPid)))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the victim's shim is gone", func() bool { return syscall.Kill(pid, 0) != nil })
	// The quitter's exit, persisted by its shim, happens while berthd is
	// down, and web logs on.
	eventually(t, time.Minute, "the quitter's exit persisted while berthd is down", func() bool {
		st, err := shimapi.ReadExitFile(e.d.bundle("k8s.io", quitter))
		return err == nil && st.Status == 7
	})
	eventually(t, time.Minute, "web to log while berthd is down", func() bool { return len(readCRILog(t, logPath)) > linesDown })

	start := time.Now()
	e.d.start()
	healthy := time.Since(start)
	// A new connection per try: the env's client reconnects with gRPC's
	// backoff (a second and more), which would be measured instead.
	for {
		conn, err := grpc.NewClient("unix://"+filepath.Join(e.d.state, "cri.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		vctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err = runtimeapi.NewRuntimeServiceClient(conn).Version(vctx, &runtimeapi.VersionRequest{})
		cancel()
		conn.Close()
		if err == nil {
			break
		}
		if time.Since(start) > time.Minute {
			t.Fatalf("the CRI did not serve a minute after the restart: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	served := time.Since(start)
	e.waitServing(t)
	if _, err := e.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err != nil {
		t.Fatal(err)
	}
	// Exits while berthd was down are recorded before the CRI serves: the
	// first list never shows those containers running.
	if first := states(); first[quitter] != runtimeapi.ContainerState_CONTAINER_EXITED || first[victim] != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Errorf("first list after the restart: quitter %v, victim %v: want both exited", first[quitter], first[victim])
	}
	// The first event subscriber after the restart: it gets the exits
	// recorded at the start, as the kubelet's evented PLEG needs them.
	evs := e.subscribeEvents(t)
	t.Logf("drill: %d pods, %d containers, 2 exited while berthd was down (one exit 7, one shim killed)", len(pods), len(before))
	t.Logf("drill: berthd restart → its API healthy: %v, → CRI serving: %v", healthy.Round(time.Millisecond), served.Round(time.Millisecond))

	// Until every pod and container answers as before: same ids, pods
	// ready with the same IPs and namespaces, webs running, the two that
	// exited while berthd was down exited.
	consistent := func() error {
		for _, p := range pods {
			st, err := e.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.id, Verbose: true})
			if err != nil {
				return fmt.Errorf("pod %s: %v", p.cfg.Metadata.Name, err)
			}
			ip, netns := st.Status.GetNetwork().GetIp(), st.Info["info"]
			if st.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY || ip != p.ip || ip == "" || !sameNetNS(netns, p.netns) {
				return fmt.Errorf("pod %s: state %v ip %q netns %s: want ready, ip %q, netns %s", p.cfg.Metadata.Name, st.Status.State, ip, netns, p.ip, p.netns)
			}
		}
		now := states()
		for id := range before {
			want := runtimeapi.ContainerState_CONTAINER_RUNNING
			if id == quitter || id == victim {
				want = runtimeapi.ContainerState_CONTAINER_EXITED
			}
			if now[id] != want {
				return fmt.Errorf("container %.12s: %v, want %v", id, now[id], want)
			}
		}
		return nil
	}
	deadline := time.Now().Add(time.Minute)
	for err := consistent(); err != nil; err = consistent() {
		if time.Now().After(deadline) {
			t.Fatalf("a minute after the restart: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("drill: berthd restart → every pod and container as before (ids, states, IPs, netns): %v", time.Since(start).Round(time.Millisecond))

	// Exec and port forward work again.
	eventually(t, time.Minute, "ExecSync in every pod", func() bool {
		for _, p := range pods {
			r, err := e.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: p.web, Cmd: []string{"true"}, Timeout: 30})
			if err != nil || r.ExitCode != 0 {
				return false
			}
		}
		return true
	})
	t.Logf("drill: berthd restart → ExecSync works in every pod: %v", time.Since(start).Round(time.Millisecond))
	if body := e.portForwardGet(t, pods[1].id, 8080, "/index.html"); body != "pong\n" {
		t.Errorf("port forward after the restart: %q", body)
	}
	t.Logf("drill: berthd restart → a port forward answered: %v", time.Since(start).Round(time.Millisecond))

	// Pods: same ids, ready, same IPs and namespaces.
	for _, p := range pods {
		st, err := e.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.id, Verbose: true})
		if err != nil {
			t.Errorf("pod %s: %v", p.cfg.Metadata.Name, err)
			continue
		}
		t.Logf("drill: pod %s state %v ip %s (was %s)", p.cfg.Metadata.Name, st.Status.State, st.Status.GetNetwork().GetIp(), p.ip)
	}
	// Containers: the same ids; web runs; the quitter exited 7 (Error);
	// the victim is exited with a reason.
	after := states()
	for id, was := range before {
		got, ok := after[id]
		if !ok {
			t.Errorf("container %.12s (%v) is gone", id, was)
		}
		t.Logf("drill: container %.12s %v → %v", id, was, got)
	}
	for _, p := range pods {
		if after[p.web] != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Errorf("web of %s: %v: want running", p.cfg.Metadata.Name, after[p.web])
		}
	}
	if after[quitter] != runtimeapi.ContainerState_CONTAINER_EXITED || after[victim] != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Errorf("after the restart: quitter %v, victim %v: want both exited", after[quitter], after[victim])
	}
	qs := e.waitExited(t, quitter)
	t.Logf("drill: quitter exit %d reason %q", qs.ExitCode, qs.Reason)
	if qs.ExitCode != 7 || qs.Reason != "Error" || qs.FinishedAt == 0 {
		t.Errorf("quitter: exit %d reason %q finished %d: want 7, Error, a time", qs.ExitCode, qs.Reason, qs.FinishedAt)
	}
	vs := e.waitExited(t, victim)
	t.Logf("drill: victim (shim killed) exit %d reason %q message %q", vs.ExitCode, vs.Reason, vs.Message)
	if vs.Reason == "" {
		t.Errorf("victim: exited without a reason: %v", vs)
	}
	// Each exit recorded at the start is announced once to the first
	// event subscriber.
	stopped := map[string]int{}
	eventually(t, time.Minute, "the stopped events of the quitter and the victim", func() bool {
		select {
		case ev := <-evs.ch:
			if ev.ContainerEventType == runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT {
				stopped[ev.ContainerId]++
			}
		default:
		}
		return stopped[quitter] > 0 && stopped[victim] > 0
	})
	t.Logf("drill: berthd restart → stopped events of both exits: %v", time.Since(start).Round(time.Millisecond))
	if _, err := e.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: victim}); err != nil {
		t.Errorf("remove the victim: %v", err)
	}

	// Logs go on in the same file.
	n := len(readCRILog(t, logPath))
	eventually(t, time.Minute, "web logs on after the restart", func() bool { return len(readCRILog(t, logPath)) > n+3 })

	// Exec and port forward.
	for _, p := range pods {
		r, err := e.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: p.web, Cmd: []string{"sh", "-c", "echo in $(hostname); exit 4"}, Timeout: 30})
		if err != nil || r.ExitCode != 4 || string(r.Stdout) != "in "+p.cfg.Hostname+"\n" {
			t.Errorf("ExecSync in %s: %v %v", p.cfg.Metadata.Name, r, err)
		}
	}
	er, err := e.rt.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: pods[0].web, Cmd: []string{"cat", "/www/index.html"}, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(er.Url)
	if err != nil {
		t.Fatal(err)
	}
	ex, err := remotecommand.NewSPDYExecutor(&rest.Config{}, http.MethodPost, u)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &out}); err != nil || out.String() != "pong\n" {
		t.Errorf("streaming exec after the restart: %q %v", out.String(), err)
	}

	for _, p := range pods {
		if _, err := e.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.id}); err != nil {
			t.Errorf("stop %s: %v", p.cfg.Metadata.Name, err)
		}
		if _, err := e.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.id}); err != nil {
			t.Errorf("remove %s: %v", p.cfg.Metadata.Name, err)
		}
	}
	// Events come in order: once the last pod's delete is seen, every
	// stop before it was too. The exits recorded at the start were
	// announced once, not again when their shims' own events came.
	last := pods[len(pods)-1].id
	for {
		ev := evs.next(t)
		if ev.ContainerEventType == runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT {
			stopped[ev.ContainerId]++
		}
		if ev.ContainerId == last && ev.ContainerEventType == runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT {
			break
		}
	}
	if stopped[quitter] != 1 || stopped[victim] != 1 {
		t.Errorf("stopped events: quitter %d, victim %d: want one each", stopped[quitter], stopped[victim])
	}
	e.checkNothingLeft(t)
}

// sameNetNS reports whether two verbose pod infos name the same netns.
func sameNetNS(a, b string) bool {
	ns := func(s string) string {
		i := strings.Index(s, `"netns":`)
		if i < 0 {
			return ""
		}
		s = s[i+len(`"netns":`):]
		j := strings.Index(s, ",")
		if j < 0 {
			return s
		}
		return s[:j]
	}
	return ns(a) != "" && ns(a) == ns(b)
}
