package integration

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/internal/testimage"
	"github.com/berthrt/berth/internal/testutil"
)

// podConfig is the config of a test pod named name.
func (e *criEnv) podConfig(t *testing.T, name string, hostNetwork bool) *runtimeapi.PodSandboxConfig {
	mode := runtimeapi.NamespaceMode_POD
	if hostNetwork {
		mode = runtimeapi.NamespaceMode_NODE
	}
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "test", Uid: name + "-uid"},
		Hostname:     name,
		LogDirectory: filepath.Join(e.logDir, name),
		Labels:       map[string]string{"app": name},
		DnsConfig:    &runtimeapi.DNSConfig{Servers: []string{"10.0.0.10"}, Searches: []string{"test.svc"}, Options: []string{"ndots:5"}},
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: mode},
		}},
	}
}

// runPod pulls the busybox image and runs a pod.
func (e *criEnv) runPod(t *testing.T, cfg *runtimeapi.PodSandboxConfig) string {
	t.Helper()
	ctx := e.ctx(t)
	if _, err := e.images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: e.busybox}}); err != nil {
		t.Fatal(err)
	}
	r, err := e.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatalf("run pod: %v", err)
	}
	return r.PodSandboxId
}

// startContainer creates and starts a busybox container running args in
// pod.
func (e *criEnv) startContainer(t *testing.T, pod string, podCfg *runtimeapi.PodSandboxConfig, name string, args ...string) string {
	t.Helper()
	ctx := e.ctx(t)
	r, err := e.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: pod, SandboxConfig: podCfg,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: name},
			Image:    &runtimeapi.ImageSpec{Image: e.busybox},
			Command:  args,
			Envs:     []*runtimeapi.KeyValue{{Key: "GREETING", Value: []byte("hello")}},
			LogPath:  name + ".log",
			Labels:   map[string]string{"name": name},
			// As the kubelet asks unless the pod shares its processes.
			Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Network: podCfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork(), Pid: runtimeapi.NamespaceMode_CONTAINER},
			}},
		},
	})
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	if _, err := e.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: r.ContainerId}); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	return r.ContainerId
}

// waitExited waits until container id has exited and returns its status.
func (e *criEnv) waitExited(t *testing.T, id string) *runtimeapi.ContainerStatus {
	t.Helper()
	ctx := e.ctx(t)
	for {
		r, err := e.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
		if err != nil {
			t.Fatal(err)
		}
		if r.Status.State == runtimeapi.ContainerState_CONTAINER_EXITED {
			return r.Status
		}
		select {
		case <-ctx.Done():
			t.Fatalf("container %s did not exit: %v", id, r.Status)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestCRIPod runs a pod of two containers that talk over the pod's
// localhost, execs in one, and checks that stop and remove leave nothing
// behind and may be repeated.
func TestCRIPod(t *testing.T) {
	e := newCRIEnv(t)
	ctx := e.ctx(t)
	cfg := e.podConfig(t, "two", false)
	pod := e.runPod(t, cfg)

	ps, err := e.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod})
	if err != nil || ps.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY || !e.net.Subnet.Contains(net.ParseIP(ps.Status.GetNetwork().GetIp())) {
		t.Fatalf("pod status: %v %v", ps, err)
	}
	podIP := ps.Status.Network.Ip

	server := e.startContainer(t, pod, cfg, "server", "sh", "-c",
		`trap 'exit 143' TERM; mkdir /www && echo "$GREETING from $(hostname)" > /www/index.html && echo ready
		httpd -f -p 8080 -h /www & wait`)
	// The client reaches the server over the pod's localhost, then over
	// the pod's IP; it writes to stdout and stderr, and one line longer
	// than a log line's 16 KiB.
	client := e.startContainer(t, pod, cfg, "client", "sh", "-c",
		`for i in $(seq 200); do wget -q -O - http://127.0.0.1:8080/ && break; sleep 0.05; done
		wget -q -O - http://`+podIP+`:8080/ || exit 1
		echo oops >&2; head -c 20000 /dev/zero | tr '\0' x; echo`)
	st := e.waitExited(t, client)
	if st.ExitCode != 0 || st.Reason != "Completed" || st.FinishedAt < st.StartedAt || st.StartedAt < st.CreatedAt {
		t.Errorf("client status: %v", st)
	}
	// Each stream keeps its order; the two interleave as they come.
	lines := readCRILog(t, st.LogPath)
	stdout := slices.DeleteFunc(slices.Clone(lines), func(l criLogLine) bool { return l.stream != "stdout" })
	stderr := slices.DeleteFunc(slices.Clone(lines), func(l criLogLine) bool { return l.stream != "stderr" })
	want := []criLogLine{{"stdout", "F", "hello from two"}, {"stdout", "F", "hello from two"},
		{"stdout", "P", strings.Repeat("x", 16384)}, {"stdout", "F", strings.Repeat("x", 20000-16384)}}
	if !slices.Equal(stdout, want) || !slices.Equal(stderr, []criLogLine{{"stderr", "F", "oops"}}) {
		t.Errorf("client log %s:\n%.300v", st.LogPath, lines)
	}

	// ReopenContainerLog: the rotated file keeps what was written, the
	// new one gets what comes after.
	serverLog := filepath.Join(cfg.LogDirectory, "server.log")
	if err := os.Rename(serverLog, serverLog+".1"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rt.ReopenContainerLog(ctx, &runtimeapi.ReopenContainerLogRequest{ContainerId: server}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: server, Cmd: []string{"sh", "-c", "echo after > /proc/1/fd/1"}}); err != nil {
		t.Fatal(err)
	}
	if got := readCRILog(t, serverLog+".1"); !slices.Equal(got, []criLogLine{{"stdout", "F", "ready"}}) {
		t.Errorf("rotated server log: %v", got)
	}
	eventually(t, time.Minute, "the line written after the reopen", func() bool {
		return slices.Equal(readCRILog(t, serverLog), []criLogLine{{"stdout", "F", "after"}})
	})

	// ExecSync: output, exit code, timeout.
	r, err := e.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: server, Cmd: []string{"sh", "-c", "echo out; echo err >&2; cat /etc/resolv.conf; exit 3"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(r.Stdout), "out\nnameserver 10.0.0.10\nsearch test.svc\noptions ndots:5\n") || string(r.Stderr) != "err\n" || r.ExitCode != 3 {
		t.Errorf("exec: stdout %q stderr %q code %d", r.Stdout, r.Stderr, r.ExitCode)
	}
	_, err = e.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: server, Cmd: []string{"sleep", "77"}, Timeout: 1})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("exec past its timeout: %v, want DeadlineExceeded", err)
	}
	r, err = e.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: server, Cmd: []string{"sh", "-c", "ps -o args | grep -c '^sleep 77' || true"}})
	if err != nil || strings.TrimSpace(string(r.Stdout)) != "0" {
		t.Errorf("the timed-out exec still runs: %q %v", r.GetStdout(), err)
	}

	// Stats of the running server.
	stats, err := e.rt.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: server})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Stats.GetCpu().GetUsageCoreNanoSeconds().GetValue() == 0 || stats.Stats.GetMemory().GetWorkingSetBytes().GetValue() == 0 {
		t.Errorf("stats: %v", stats.Stats)
	}

	list, err := e.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		PodSandboxId: pod, State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING},
	}})
	if err != nil || len(list.Containers) != 1 || list.Containers[0].Id != server {
		t.Errorf("running containers of the pod: %v %v", list, err)
	}
	// Stop with a grace period: httpd ends on TERM.
	if _, err := e.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: server, Timeout: 10}); err != nil {
		t.Fatal(err)
	}
	if st := e.waitExited(t, server); st.Reason != "Error" || st.ExitCode != 143 {
		t.Errorf("server after stop: %v", st)
	}
	for range 2 {
		if _, err := e.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
			t.Fatalf("stop pod: %v", err)
		}
	}
	ps, err = e.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod})
	if err != nil || ps.Status.State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Fatalf("pod status after stop: %v %v", ps, err)
	}
	for range 2 {
		if _, err := e.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod}); err != nil {
			t.Fatalf("remove pod: %v", err)
		}
		if _, err := e.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: server}); err != nil {
			t.Fatalf("remove a removed container: %v", err)
		}
		if _, err := e.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: client}); err != nil {
			t.Fatalf("stop a removed container: %v", err)
		}
	}
	if _, err := e.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod}); status.Code(err) != codes.NotFound {
		t.Errorf("status of a removed pod: %v, want NotFound", err)
	}
	e.checkNothingLeft(t)
}

// criLogLine is a line of a CRI log without its time stamp.
type criLogLine struct{ stream, tag, content string }

// readCRILog reads a CRI log, checking each line's time stamp.
func readCRILog(t *testing.T, path string) []criLogLine {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []criLogLine
	for _, l := range strings.SplitAfter(string(data), "\n") {
		if l == "" {
			continue
		}
		f := strings.SplitN(strings.TrimSuffix(l, "\n"), " ", 4)
		if len(f) != 4 || !strings.HasSuffix(l, "\n") {
			t.Fatalf("%s: bad line %.100q", path, l)
		}
		if _, err := time.Parse(time.RFC3339Nano, f[0]); err != nil {
			t.Errorf("%s: time stamp %q: %v", path, f[0], err)
		}
		out = append(out, criLogLine{f[1], f[2], f[3]})
	}
	return out
}

// checkNothingLeft checks that no pod left a container, a bundle (and so
// a shim), a mount, an IP reservation or an iptables rule behind.
func (e *criEnv) checkNothingLeft(t *testing.T) {
	t.Helper()
	ctx := e.ctx(t)
	pods, err := e.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil || len(pods.Items) != 0 {
		t.Errorf("pods left: %v %v", pods, err)
	}
	ctrs, err := e.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil || len(ctrs.Containers) != 0 {
		t.Errorf("containers left: %v %v", ctrs, err)
	}
	if bundles, _ := filepath.Glob(filepath.Join(e.d.state, "k8s.io", "*")); len(bundles) != 0 {
		t.Errorf("bundles (shims) left: %v", bundles)
	}
	if left := mountsUnder(e.d.state); len(left) != 0 {
		t.Errorf("mounts left: %v", left)
	}
	for _, dir := range []string{"sandboxes", "netns", "volumes", "imagemounts"} {
		if entries, _ := os.ReadDir(filepath.Join(e.d.state, ".cri", dir)); len(entries) != 0 {
			t.Errorf("%s left: %v", dir, entries)
		}
	}
	reservations, _ := filepath.Glob(filepath.Join(e.cniData, "*", "[0-9]*"))
	if len(reservations) != 0 {
		t.Errorf("IP reservations left: %v", reservations)
	}
	// The plugins' rules name the env's own network: stopped pods left
	// none (the env's cleanup would remove them anyway).
	for _, table := range []string{"nat", "filter"} {
		for _, l := range testutil.IPTablesSave(t, table) {
			if strings.Contains(l, e.net.Name) {
				t.Errorf("iptables rule left in %s: %s", table, l)
			}
		}
	}
}

// TestCRIHostNetworkPod runs a pod in the host's network and UTS
// namespaces, without CNI, and a container that shares the pod's
// processes.
func TestCRIHostNetworkPod(t *testing.T) {
	e := newCRIEnv(t)
	ctx := e.ctx(t)
	cfg := e.podConfig(t, "host", true)
	cfg.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
	pod := e.runPod(t, cfg)
	ps, err := e.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod})
	if err != nil || ps.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY || ps.Status.GetNetwork().GetIp() != "" {
		t.Fatalf("pod status: %v %v", ps, err)
	}
	r, err := e.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: cfg, Config: &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "shared"},
		Image:    &runtimeapi.ImageSpec{Image: e.busybox},
		Command:  []string{"sleep", "600"},
		Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_POD},
		}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: r.ContainerId}); err != nil {
		t.Fatal(err)
	}
	hostname, _ := os.Hostname()
	out, err := e.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: r.ContainerId, Cmd: []string{"sh", "-c", "hostname; ps -o args | grep -c '^/bin/sh -c trap'"}})
	if err != nil || string(out.Stdout) != hostname+"\n1\n" {
		t.Errorf("exec: %q %q %v (want the host's name, and the sandbox's process seen)", out.GetStdout(), out.GetStderr(), err)
	}
	stats, err := e.rt.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: pod})
	if err != nil || len(stats.Stats.GetLinux().GetContainers()) != 1 || stats.Stats.Linux.Memory.WorkingSetBytes.GetValue() == 0 {
		t.Errorf("pod stats: %v %v", stats, err)
	}
	if _, err := e.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatal(err)
	}
	e.checkNothingLeft(t)
}

// TestCRIImageVolumes checks that the VOLUME folders of an image config
// are folders of their own, that a CRI mount replaces one, and that they
// go with the container.
func TestCRIImageVolumes(t *testing.T) {
	e := newCRIEnv(t)
	ctx := e.ctx(t)
	entries, err := testimage.BusyboxEntries("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	ref := e.reg.Addr + "/volumes:1"
	img, err := testimage.Build(ocispec.ImageConfig{Env: testimage.BusyboxConfig().Env, Cmd: []string{"sleep", "600"},
		Volumes: map[string]struct{}{"/data": {}, "/over": {}}}, entries)
	if err != nil {
		t.Fatal(err)
	}
	pushTestimage(t, ref, img)
	cfg := e.podConfig(t, "vol", false)
	pod := e.runPod(t, cfg)
	if _, err := e.images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
		t.Fatal(err)
	}
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "from-host"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := e.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: cfg, Config: &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "vol"},
		Image:    &runtimeapi.ImageSpec{Image: ref},
		Mounts:   []*runtimeapi.Mount{{HostPath: host, ContainerPath: "/over"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: r.ContainerId}); err != nil {
		t.Fatal(err)
	}
	out, err := e.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: r.ContainerId, Cmd: []string{"sh", "-c", "touch /data/x && ls /over"}})
	if err != nil || out.ExitCode != 0 || string(out.Stdout) != "from-host\n" {
		t.Fatalf("exec: %q %q %v", out.GetStdout(), out.GetStderr(), err)
	}
	vols, _ := filepath.Glob(filepath.Join(e.d.state, ".cri", "volumes", r.ContainerId, "*", "x"))
	if len(vols) != 1 {
		t.Errorf("the file written to /data is not in one image volume on the host: %v", vols)
	}
	if _, err := e.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatal(err)
	}
	e.checkNothingLeft(t)
}
