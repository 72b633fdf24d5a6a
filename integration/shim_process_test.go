package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/proc"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/oci"
	"github.com/berthrt/berth/shimapi"
)

func TestShimStdinRoundTrip(t *testing.T) {
	s := startShim(t, "stdin", []oci.SpecOpts{oci.WithProcessArgs("cat")})
	dir := t.TempDir()
	in, w := newInput(t, dir, "stdin")
	out := newOutput(t, dir, "stdout")
	s.create(&shimapi.Stdio{Stdin: in, Stdout: out.path})
	s.start("")
	if _, err := io.WriteString(w, "ping\n"); err != nil {
		t.Fatal(err)
	}
	out.waitFor(t, "ping\n")
	// The shim holds the FIFO open itself, so a client that closes its
	// end is no EOF (it may attach again); CloseIO is, and cat exits 0.
	w.Close()
	if _, err := s.task.CloseIO(ctx(t), &shimapi.CloseIORequest{Id: s.id, Stdin: true}); err != nil {
		t.Fatal(err)
	}
	if code := s.wait(""); code != 0 {
		t.Fatalf("cat exited %d", code)
	}
	if got := out.closed(t); got != "ping\n" {
		t.Fatalf("stdout = %q", got)
	}
}

func TestShimCloseIO(t *testing.T) {
	s := startShim(t, "closeio", []oci.SpecOpts{oci.WithProcessArgs("sh", "-c", "cat; echo eof-seen")})
	dir := t.TempDir()
	in, w := newInput(t, dir, "stdin")
	out := newOutput(t, dir, "stdout")
	s.create(&shimapi.Stdio{Stdin: in, Stdout: out.path})
	s.start("")
	io.WriteString(w, "a\n")
	out.waitFor(t, "a\n")
	// The client keeps its writer open; CloseIO alone must deliver EOF.
	if _, err := s.task.CloseIO(ctx(t), &shimapi.CloseIORequest{Id: s.id, Stdin: true}); err != nil {
		t.Fatal(err)
	}
	if code := s.wait(""); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if got := out.closed(t); got != "a\neof-seen\n" {
		t.Fatalf("stdout = %q", got)
	}
}

func TestShimTerminalResize(t *testing.T) {
	s := startShim(t, "tty", []oci.SpecOpts{oci.WithTTY, oci.WithProcessArgs("sh", "-c", "read x; stty size; exit 2")})
	dir := t.TempDir()
	in, w := newInput(t, dir, "stdin")
	out := newOutput(t, dir, "stdout")
	s.create(&shimapi.Stdio{Stdin: in, Stdout: out.path, Terminal: true})
	s.start("")
	if _, err := s.task.ResizePty(ctx(t), &shimapi.ResizePtyRequest{Id: s.id, Width: 100, Height: 40}); err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "go\n")
	out.waitFor(t, "40 100")
	if code := s.wait(""); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
}

func execSpec(t *testing.T, terminal bool, args ...string) []byte {
	t.Helper()
	p := specs.Process{Args: args, Cwd: "/", Terminal: terminal, Env: []string{"PATH=/bin"}}
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestShimExec(t *testing.T) {
	s := startShim(t, "exec", []oci.SpecOpts{oci.WithProcessArgs("sleep", "1000")})
	s.create(&shimapi.Stdio{})
	initPid := s.start("")
	dir := t.TempDir()
	out, errOut := newOutput(t, dir, "exec-out"), newOutput(t, dir, "exec-err")
	spec := execSpec(t, false, "sh", "-c", "echo exec-out; echo exec-err >&2; exit 7")
	if _, err := s.task.Exec(ctx(t), &shimapi.ExecRequest{Id: s.id, ExecId: "e1", Spec: spec, Stdio: &shimapi.Stdio{Stdout: out.path, Stderr: errOut.path}}); err != nil {
		t.Fatal(err)
	}
	if st := s.status("e1"); st != shimapi.Status_STATUS_CREATED {
		t.Fatalf("exec status %v before start", st)
	}
	_, err := s.task.Exec(ctx(t), &shimapi.ExecRequest{Id: s.id, ExecId: "e1", Spec: spec, Stdio: &shimapi.Stdio{}})
	if !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("duplicate exec id: %v, want already exists", err)
	}
	if pid := s.start("e1"); pid == 0 || pid == initPid {
		t.Fatalf("exec pid %d (init %d)", pid, initPid)
	}
	if code := s.wait("e1"); code != 7 {
		t.Fatalf("exec exit %d, want 7", code)
	}
	if got := out.closed(t); got != "exec-out\n" {
		t.Fatalf("exec stdout %q", got)
	}
	if got := errOut.closed(t); got != "exec-err\n" {
		t.Fatalf("exec stderr %q", got)
	}
	if _, err := s.task.Delete(ctx(t), &shimapi.DeleteRequest{Id: s.id, ExecId: "e1"}); err != nil {
		t.Fatal(err)
	}
	// The init process is untouched by the exec.
	if st := s.status(""); st != shimapi.Status_STATUS_RUNNING {
		t.Fatalf("init %v after exec", st)
	}
	// An exec that is killed.
	if _, err := s.task.Exec(ctx(t), &shimapi.ExecRequest{Id: s.id, ExecId: "e2", Spec: execSpec(t, false, "sleep", "1000"), Stdio: &shimapi.Stdio{}}); err != nil {
		t.Fatal(err)
	}
	s.start("e2")
	if _, err := s.task.Kill(ctx(t), &shimapi.KillRequest{Id: s.id, ExecId: "e2", Signal: uint32(syscall.SIGKILL)}); err != nil {
		t.Fatal(err)
	}
	if code := s.wait("e2"); code != 137 {
		t.Fatalf("killed exec exit %d", code)
	}
}

func TestShimPauseResumePids(t *testing.T) {
	s := startShim(t, "pause", []oci.SpecOpts{oci.WithProcessArgs("sleep", "1000")})
	s.create(&shimapi.Stdio{})
	pid := s.start("")
	if _, err := s.task.Pause(ctx(t), &shimapi.PauseRequest{Id: s.id}); err != nil {
		t.Fatal(err)
	}
	if st := s.status(""); st != shimapi.Status_STATUS_PAUSED {
		t.Fatalf("status %v after pause", st)
	}
	if state := procState(t, int(pid)); state != "D" && state != "S" && state != "T" {
		t.Logf("paused process state %q", state)
	}
	if _, err := s.task.Pause(ctx(t), &shimapi.PauseRequest{Id: s.id}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("second pause: %v, want failed precondition", err)
	}
	if _, err := s.task.Resume(ctx(t), &shimapi.ResumeRequest{Id: s.id}); err != nil {
		t.Fatal(err)
	}
	if st := s.status(""); st != shimapi.Status_STATUS_RUNNING {
		t.Fatalf("status %v after resume", st)
	}
	pids, err := s.task.Pids(ctx(t), &shimapi.PidsRequest{Id: s.id})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range pids.Processes {
		found = found || p.Pid == pid
	}
	if !found {
		t.Fatalf("pids %v lack init %d", pids.Processes, pid)
	}
}

func procState(t *testing.T, pid int) string {
	data, err := os.ReadFile(filepath.Join("/proc", itoa(pid), "stat"))
	if err != nil {
		return ""
	}
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	return f[0]
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestShimStats(t *testing.T) {
	s := startShim(t, "stats", []oci.SpecOpts{
		oci.WithMemoryLimit(64 << 20),
		oci.WithProcessArgs("sh", "-c", "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; echo busy-done; sleep 1000"),
	})
	out := newOutput(t, t.TempDir(), "stdout")
	s.create(&shimapi.Stdio{Stdout: out.path})
	s.start("")
	out.waitFor(t, "busy-done")
	st, err := s.task.Stats(ctx(t), &shimapi.StatsRequest{Id: s.id})
	if err != nil {
		t.Fatal(err)
	}
	m := st.Metrics
	if m.CpuUsageNs == 0 || m.MemoryUsageBytes == 0 || m.PidsCurrent == 0 {
		t.Fatalf("zero metrics: %+v", m)
	}
	if m.MemoryLimitBytes != 64<<20 {
		t.Fatalf("memory limit %d, want %d", m.MemoryLimitBytes, 64<<20)
	}
	// Update raises the limit; Stats sees it.
	limit := int64(128 << 20)
	res, _ := json.Marshal(specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}})
	if _, err := s.task.Update(ctx(t), &shimapi.UpdateRequest{Id: s.id, Resources: res}); err != nil {
		t.Fatal(err)
	}
	st, err = s.task.Stats(ctx(t), &shimapi.StatsRequest{Id: s.id})
	if err != nil {
		t.Fatal(err)
	}
	if st.Metrics.MemoryLimitBytes != 128<<20 {
		t.Fatalf("memory limit after update %d", st.Metrics.MemoryLimitBytes)
	}
}

// events reads the shim's event stream in the background.
type eventReader struct {
	ch     chan *shimapi.Envelope
	cancel context.CancelFunc
}

func (s *shim) events(t *testing.T) *eventReader {
	t.Helper()
	c, cancel := context.WithCancel(context.Background())
	stream, err := s.task.Events(c, &shimapi.EventsRequest{})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	r := &eventReader{ch: make(chan *shimapi.Envelope, 64), cancel: cancel}
	t.Cleanup(cancel)
	go func() {
		defer close(r.ch)
		for {
			e, err := stream.Recv()
			if err != nil {
				return
			}
			r.ch <- e
		}
	}()
	return r
}

// next returns the next event with the topic, skipping others.
func (r *eventReader) next(t *testing.T, topic string) *shimapi.Envelope {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case e, ok := <-r.ch:
			if !ok {
				t.Fatalf("event stream ended before %s", topic)
			}
			if e.Topic == topic {
				return e
			}
		case <-timeout:
			t.Fatalf("no %s event", topic)
		}
	}
}

func TestShimOOM(t *testing.T) {
	s := startShim(t, "oom", []oci.SpecOpts{
		oci.WithMemoryLimit(16 << 20),
		oci.WithProcessArgs("dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"),
	})
	ev := s.events(t)
	s.create(&shimapi.Stdio{})
	s.start("")
	e := ev.next(t, "/tasks/oom")
	if e.GetOom().GetContainerId() != s.id {
		t.Fatalf("oom event %v", e)
	}
	if code := s.wait(""); code != 137 {
		t.Fatalf("OOM-killed exit %d, want 137", code)
	}
	st, err := s.task.Stats(ctx(t), &shimapi.StatsRequest{Id: s.id})
	if err == nil && st.Metrics.OomEvents == 0 {
		t.Fatalf("stats report no OOM kill: %+v", st.Metrics)
	}
}

func TestShimEventsAndReconnect(t *testing.T) {
	s := startShim(t, "reconnect", []oci.SpecOpts{oci.WithProcessArgs("sleep", "1000")})
	ev := s.events(t)
	s.create(&shimapi.Stdio{})
	pid := s.start("")
	create := ev.next(t, "/tasks/create")
	start := ev.next(t, "/tasks/start")
	if create.Seq != 1 || start.Seq <= create.Seq || create.GetCreate().GetPid() != pid {
		t.Fatalf("events create %v start %v", create, start)
	}
	ev.cancel()

	// The client goes away without acknowledging; the container runs on.
	s.reconnect()
	if st := s.status(""); st != shimapi.Status_STATUS_RUNNING {
		t.Fatalf("after reconnect: %v", st)
	}
	ev = s.events(t)
	if again := ev.next(t, "/tasks/create"); again.Seq != create.Seq {
		t.Fatalf("unacknowledged create not sent again: %v", again)
	}
	if _, err := s.task.AckEvents(ctx(t), &shimapi.AckEventsRequest{Seq: start.Seq}); err != nil {
		t.Fatal(err)
	}
	ev.cancel()

	// The container exits while no client is connected.
	s.client.Close()
	syscall.Kill(int(pid), syscall.SIGKILL)
	time.Sleep(200 * time.Millisecond)
	s.connect()
	ev = s.events(t)
	exit := ev.next(t, "/tasks/exit")
	if exit.Seq <= start.Seq || exit.GetExit().GetExitStatus() != 137 || exit.GetExit().GetPid() != pid {
		t.Fatalf("exit event %v", exit)
	}
	if code := s.wait(""); code != 137 {
		t.Fatalf("wait after reconnect: %d", code)
	}
	// Acknowledged events are not sent again: the first is the exit.
	ev.cancel()
	ev = s.events(t)
	select {
	case first := <-ev.ch:
		if first.Seq <= start.Seq {
			t.Fatalf("acknowledged event %d sent again", first.Seq)
		}
	case <-time.After(time.Minute):
		t.Fatal("no event after reconnect")
	}
}

func TestShimKilledThenDelete(t *testing.T) {
	s := startShim(t, "killed", []oci.SpecOpts{oci.WithProcessArgs("sleep", "1000")})
	s.create(&shimapi.Stdio{})
	pid := s.start("")
	shimPid := s.shimPid()
	s.client.Close()
	s.client = nil
	if err := syscall.Kill(shimPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, shimPid)
	if !proc.Alive(int(pid)) {
		t.Fatal("the container died with its shim")
	}
	out, err := s.shimCmd("delete").Output()
	if err != nil {
		t.Fatalf("delete: %v: %s", err, stderrOf(err))
	}
	if len(strings.TrimSpace(string(out))) != 0 {
		t.Fatalf("delete printed an exit status for a container that never exited: %s", out)
	}
	waitGone(t, int(pid))
	if mounted(t, filepath.Join(s.bundle, "rootfs")) {
		t.Fatal("rootfs still mounted")
	}
	if _, err := os.Stat(filepath.Join(s.runtimeRoot, s.id)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("runc state left: %v", err)
	}
	// Idempotent.
	if out, err := s.shimCmd("delete").CombinedOutput(); err != nil {
		t.Fatalf("second delete: %v: %s", err, out)
	}
}

func TestShimDeleteReportsPersistedExit(t *testing.T) {
	s := startShim(t, "persisted", []oci.SpecOpts{oci.WithProcessArgs("sh", "-c", "exit 9")})
	s.create(&shimapi.Stdio{})
	s.start("")
	s.wait("")
	shimPid := s.shimPid()
	s.client.Close()
	s.client = nil
	syscall.Kill(shimPid, syscall.SIGKILL)
	waitGone(t, shimPid)
	out, err := s.shimCmd("delete").Output()
	if err != nil {
		t.Fatalf("delete: %v: %s", err, stderrOf(err))
	}
	var st shimapi.ExitStatus
	if err := json.Unmarshal(out, &st); err != nil || st.Status != 9 {
		t.Fatalf("delete printed %q (%v), want exit status 9", out, err)
	}
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		if !proc.Alive(pid) {
			return
		}
		// A zombie still answers kill(0); its state is Z.
		if procState(t, pid) == "Z" {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("process %d still alive", pid)
}

func TestShimBadInput(t *testing.T) {
	s := startShim(t, "bad", []oci.SpecOpts{oci.WithProcessArgs("sleep", "1000")})
	os.Rename(filepath.Join(s.bundle, "config.json"), filepath.Join(s.bundle, "config.json.away"))
	_, err := s.task.Create(ctx(t), &shimapi.CreateRequest{Id: s.id, Stdio: &shimapi.Stdio{}})
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "config.json") {
		t.Fatalf("create without config.json: %v", err)
	}
	os.Rename(filepath.Join(s.bundle, "config.json.away"), filepath.Join(s.bundle, "config.json"))
	_, err = s.task.Create(ctx(t), &shimapi.CreateRequest{Id: "other", Stdio: &shimapi.Stdio{}})
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("create of another id: %v", err)
	}
	_, err = s.task.Create(ctx(t), &shimapi.CreateRequest{Id: s.id, Stdio: &shimapi.Stdio{Stdout: "relative/path"}})
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("create with relative stdout: %v", err)
	}
	s.create(&shimapi.Stdio{})
	s.start("")
	_, err = s.task.Kill(ctx(t), &shimapi.KillRequest{Id: s.id, ExecId: "nope", Signal: 9})
	if !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("kill of unknown exec: %v", err)
	}
	_, err = s.task.Exec(ctx(t), &shimapi.ExecRequest{Id: s.id, ExecId: "../x", Spec: execSpec(t, false, "true"), Stdio: &shimapi.Stdio{}})
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("exec with bad id: %v", err)
	}
	_, err = s.task.Exec(ctx(t), &shimapi.ExecRequest{Id: s.id, ExecId: "x", Spec: []byte("{not json"), Stdio: &shimapi.Stdio{}})
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("exec with bad spec: %v", err)
	}
	_, err = s.task.Start(ctx(t), &shimapi.StartRequest{Id: s.id})
	if !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("second start: %v", err)
	}
	_, err = s.task.Delete(ctx(t), &shimapi.DeleteRequest{Id: s.id})
	if !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("delete of a running container: %v", err)
	}
	_, err = s.task.Shutdown(ctx(t), &shimapi.ShutdownRequest{Id: s.id})
	if !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("shutdown with a container: %v", err)
	}
	// Still serving, the container unharmed.
	if st := s.status(""); st != shimapi.Status_STATUS_RUNNING {
		t.Fatalf("after bad calls: %v", st)
	}
}

func TestShimStartIsIdempotent(t *testing.T) {
	s := startShim(t, "twice", []oci.SpecOpts{oci.WithProcessArgs("true")})
	pid := s.shimPid()
	out, err := s.shimCmd("start").Output()
	if err != nil {
		t.Fatalf("second start: %v: %s", err, stderrOf(err))
	}
	if strings.TrimSpace(string(out)) != shimapi.SocketPath(s.bundle) {
		t.Fatalf("second start printed %q", out)
	}
	s.reconnect()
	if again := s.shimPid(); again != pid {
		t.Fatalf("second start made a new shim %d (was %d)", again, pid)
	}
	st, err := os.Stat(shimapi.SocketPath(s.bundle))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v (%v)", st.Mode(), err)
	}
}

func TestShimConfigurableRuntime(t *testing.T) {
	dir := t.TempDir()
	runc, err := exec.LookPath("runc")
	testutil.Require(t, err == nil, "runc not found in PATH (run make deps)")
	log := filepath.Join(dir, "calls")
	wrapper := filepath.Join(dir, "my-runtime")
	script := "#!/bin/sh\necho \"$@\" >> " + log + "\nexec " + runc + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	s := startShim(t, "wrapped", []oci.SpecOpts{oci.WithProcessArgs("echo", "wrapped")}, withRuntime(wrapper))
	out := newOutput(t, dir, "stdout")
	s.create(&shimapi.Stdio{Stdout: out.path})
	s.start("")
	s.wait("")
	if got := out.closed(t); got != "wrapped\n" {
		t.Fatalf("stdout %q", got)
	}
	calls, _ := os.ReadFile(log)
	for _, verb := range []string{" create ", " start "} {
		if !strings.Contains(string(calls), verb) {
			t.Fatalf("runtime wrapper not used for%s: %s", verb, calls)
		}
	}
}

// TestShimExecRace starts execs that exit at once, often before the runtime
// call that started them returns: every exit must still reach Wait.
func TestShimExecRace(t *testing.T) {
	s := startShim(t, "execrace", []oci.SpecOpts{oci.WithProcessArgs("sleep", "1000")})
	s.create(&shimapi.Stdio{})
	s.start("")
	for i := 0; i < 20; i++ {
		id := "quick" + strconv.Itoa(i)
		if _, err := s.task.Exec(ctx(t), &shimapi.ExecRequest{Id: s.id, ExecId: id, Spec: execSpec(t, false, "sh", "-c", "exit "+strconv.Itoa(i)), Stdio: &shimapi.Stdio{}}); err != nil {
			t.Fatal(err)
		}
		s.start(id)
		if code := s.wait(id); code != uint32(i) {
			t.Fatalf("exec %s exit %d, want %d", id, code, i)
		}
		if _, err := s.task.Delete(ctx(t), &shimapi.DeleteRequest{Id: s.id, ExecId: id}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestShimDeleteDuringStart runs `berth-shim delete` while `berth-shim
// start` of the same bundle is starting its shim, as a restarted daemon
// undoing an unfinished create may: whichever locks the bundle first, no
// shim is left serving it, and no later start starts one.
func TestShimDeleteDuringStart(t *testing.T) {
	base := startShim(t, "del-start", []oci.SpecOpts{oci.WithProcessArgs("true")})
	for i := range 5 {
		s := &shim{t: t, id: fmt.Sprintf("del-start-%d", i), bundle: filepath.Join(t.TempDir(), "b"), runtimeRoot: base.runtimeRoot, runtime: "runc"}
		if err := os.MkdirAll(s.bundle, 0o711); err != nil {
			t.Fatal(err)
		}
		testutil.WriteSpec(t, s.bundle, s.id, oci.WithProcessArgs("true"))
		t.Cleanup(func() { // also when the round fails: no shim is left
			for _, pid := range serving(t, s.bundle) {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			s.shimCmd("delete").Run()
		})
		start := s.shimCmd("start")
		if err := start.Start(); err != nil {
			t.Fatal(err)
		}
		// delete at once: start is at its lock, its re-exec or its wait.
		out, delErr := s.shimCmd("delete").CombinedOutput()
		start.Wait() // it fails when delete came first
		if delErr != nil {
			t.Fatalf("round %d: berth-shim delete: %v: %s", i, delErr, out)
		}
		if out, err := s.shimCmd("start").CombinedOutput(); err == nil {
			t.Fatalf("round %d: start after delete succeeded: %s", i, out)
		}
		for _, pid := range serving(t, s.bundle) {
			t.Errorf("round %d: a shim (pid %d) serves the bundle after delete", i, pid)
		}
	}
}

// serving returns the pids of berth-shim processes whose command line
// names bundle.
func serving(t *testing.T, bundle string) []int {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(data, []byte("berth-shim")) || !bytes.Contains(data, []byte(bundle+"\x00")) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}
