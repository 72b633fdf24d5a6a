package integration

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthrt/berth/internal/proc"
	"github.com/berthrt/berth/internal/testutil"
	introspectionv1 "github.com/berthrt/berth/proto/introspection/v1"
	"github.com/berthrt/berth/shimapi"
)

// makeInstall runs `make install` with vars into a temp build folder (not
// the repository's bin/) and returns the path of the unit it installed.
func makeInstall(t *testing.T, vars ...string) {
	t.Helper()
	args := append([]string{"-C", testutil.RepoRoot(), "install", "BIN=" + t.TempDir()}, vars...)
	if out, err := exec.Command("make", args...).CombinedOutput(); err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestSystemdUnit installs berthd.service with `make install` and checks
// it: its ExecStart follows PREFIX, DESTDIR moves the whole install, and
// systemd-analyze verify accepts it without a word (it runs offline: no
// systemd as PID 1 is needed).
func TestSystemdUnit(t *testing.T) {
	testutil.RequireRoot(t, "make", "systemd-analyze")
	prefix := t.TempDir()
	makeInstall(t, "PREFIX="+prefix)
	unit := filepath.Join(prefix, "lib/systemd/system/berthd.service")
	data, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			settings[k] = v
		}
	}
	for k, want := range map[string]string{
		"ExecStart":      filepath.Join(prefix, "bin/berthd"),
		"Type":           "notify",
		"KillMode":       "process", // stop and restart never kill a shim
		"Delegate":       "yes",
		"Restart":        "on-failure",
		"OOMScoreAdjust": "-999",
		"LimitNOFILE":    "1048576",
		"TasksMax":       "infinity",
		"WantedBy":       "multi-user.target",
		"RestartSec":     "5",
		"LimitNPROC":     "infinity",
		"LimitCORE":      "infinity",
		"After":          "network.target local-fs.target",
		"Description":    "berth container runtime daemon",
	} {
		if settings[k] != want {
			t.Errorf("%s=%q, want %q", k, settings[k], want)
		}
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("systemd-analyze", "verify", unit)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stdout.Len()+stderr.Len() != 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s%s", unit, err, stdout.Bytes(), stderr.Bytes())
	}

	// A package build: DESTDIR moves the files, not the paths inside.
	dest := t.TempDir()
	makeInstall(t, "DESTDIR="+dest, "PREFIX=/usr")
	data, err = os.ReadFile(filepath.Join(dest, "usr/lib/systemd/system/berthd.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "\nExecStart=/usr/bin/berthd\n") {
		t.Errorf("unit installed with DESTDIR: ExecStart is not /usr/bin/berthd:\n%s", data)
	}
	if _, err := os.Stat(filepath.Join(dest, "usr/bin/berthd")); err != nil {
		t.Error(err)
	}
}

// TestDaemonNotify: berthd started with NOTIFY_SOCKET sends READY=1 once
// it serves and has reconnected the shims of the daemon before it, and
// STOPPING=1 when it stops; its shims and containers never see the
// variable. A real datagram socket stands in for systemd.
func TestDaemonNotify(t *testing.T) {
	testutil.RequireRoot(t, "runc", "busybox")
	sockPath := filepath.Join(t.TempDir(), "notify.sock")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	receive := func(want string) {
		t.Helper()
		buf := make([]byte, 4096)
		if err := sock.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil { // a bound, not a speed check
			t.Fatal(err)
		}
		n, err := sock.Read(buf)
		if err != nil {
			t.Fatalf("waiting for %s: %v", want, err)
		}
		if !strings.Contains("\n"+string(buf[:n])+"\n", "\n"+want+"\n") {
			t.Fatalf("notification %q, want %s", buf[:n], want)
		}
	}

	d := newDaemon(t, withEnv("NOTIFY_SOCKET="+sockPath))
	receive("READY=1")
	a := d.api()
	ctx := d.nsContext("notify")
	pid := a.run(t, ctx, "sleeper", []string{"sleep", "300"})
	for _, p := range []int{int(pid), shimPid(t, d, "notify", "sleeper")} {
		environ, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/environ")
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(environ, []byte("NOTIFY_SOCKET")) {
			t.Errorf("process %d inherited NOTIFY_SOCKET", p)
		}
	}

	// A restarted daemon is ready only once the shim is reconnected.
	d.kill()
	d.start()
	receive("READY=1")
	c, err := d.dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	health, err := introspectionv1.NewHealthClient(c).Check(context.Background(), &emptypb.Empty{})
	if err != nil || health.GetStatus() != introspectionv1.HealthResponse_SERVING {
		t.Errorf("health when READY=1 arrived: %v, %v; want serving (restore done)", health.GetStatus(), err)
	}

	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	receive("STOPPING=1")
	if err := d.cmd.Wait(); err != nil {
		t.Errorf("berthd after SIGTERM: %v", err)
	}
	d.cmd = nil
	if !proc.Alive(int(pid)) {
		t.Error("the container died with the daemon")
	}
}

// TestShimResetsOOMScore: a daemon with a raised oom_score_adj (a
// protected one, -999 under berthd.service, cannot be made here without
// CAP_SYS_RESOURCE) does not pass it on: shims and containers get 0.
func TestShimResetsOOMScore(t *testing.T) {
	d := newDaemon(t)
	daemonScore := "/proc/" + strconv.Itoa(d.cmd.Process.Pid) + "/oom_score_adj"
	if err := os.WriteFile(daemonScore, []byte("500"), 0); err != nil {
		t.Fatal(err)
	}
	pid := d.api().run(t, d.nsContext("oom"), "sleeper", []string{"sleep", "300"})
	for what, p := range map[string]int{"container": int(pid), "shim": shimPid(t, d, "oom", "sleeper")} {
		score, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/oom_score_adj")
		if err != nil || strings.TrimSpace(string(score)) != "0" {
			t.Errorf("%s oom_score_adj = %q, %v; want 0", what, score, err)
		}
	}
	if score, _ := os.ReadFile(daemonScore); strings.TrimSpace(string(score)) != "500" {
		t.Errorf("daemon's oom_score_adj = %q, want 500 still", score)
	}
}

// shimPid returns the pid of the shim of task ns/id, from its bundle.
func shimPid(t *testing.T, d *daemon, ns, id string) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(d.bundle(ns, id), shimapi.PidFileName))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatalf("shim pid file: %v", err)
	}
	return pid
}
