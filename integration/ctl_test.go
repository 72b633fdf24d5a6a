package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/console"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/io/cio"
)

// ctlTimeout bounds every berthctl a test runs, so that a hung command
// fails its test instead of the whole run.
const ctlTimeout = 30 * time.Second

// ctl runs the berthctl binary against a daemon, as a user types it.
type ctl struct {
	t       *testing.T
	bin     string
	address string
}

// result is how one berthctl ended.
type result struct {
	stdout, stderr string
	code           int
}

func newCtl(t *testing.T, d *daemon) *ctl {
	t.Helper()
	return &ctl{t: t, bin: testutil.Binary(t, "berthctl"), address: d.address}
}

// command returns berthctl with args, its environment free of BERTH_*
// variables but for env, bounded by ctlTimeout and killed at the end of
// the test.
func (c *ctl) command(env []string, args ...string) *exec.Cmd {
	ctx, cancel := context.WithTimeout(context.Background(), ctlTimeout)
	c.t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, c.bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "BERTH_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.WaitDelay = time.Second
	return cmd
}

// runEnv runs berthctl with args and env (no --address is added).
func (c *ctl) runEnv(env []string, args ...string) result {
	c.t.Helper()
	cmd := c.command(env, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		c.t.Fatalf("berthctl %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// run runs berthctl -a ADDRESS args.
func (c *ctl) run(args ...string) result {
	c.t.Helper()
	return c.runEnv(nil, append([]string{"-a", c.address}, args...)...)
}

// ok runs berthctl -a ADDRESS args, wants exit 0 and returns stdout.
func (c *ctl) ok(args ...string) string {
	c.t.Helper()
	r := c.run(args...)
	if r.code != 0 {
		c.t.Fatalf("berthctl %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// prints runs berthctl -a ADDRESS args, wants exit 0 and stdout want.
func (c *ctl) prints(want string, args ...string) {
	c.t.Helper()
	if got := c.ok(args...); got != want {
		c.t.Errorf("berthctl %s: printed %q, want %q", strings.Join(args, " "), got, want)
	}
}

// fails runs berthctl -a ADDRESS args and wants exit code and a stderr
// that contains every one of want.
func (c *ctl) fails(code int, want []string, args ...string) {
	c.t.Helper()
	c.check(c.run(args...), code, want, args)
}

func (c *ctl) check(r result, code int, want []string, args []string) {
	c.t.Helper()
	if r.code != code {
		c.t.Errorf("berthctl %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			c.t.Errorf("berthctl %s: stderr %q does not say %q", strings.Join(args, " "), r.stderr, w)
		}
	}
}

// background starts cmd and kills it at the end of the test if it still
// runs; the returned channel is closed once it has exited.
func background(t *testing.T, cmd *exec.Cmd) <-chan struct{} {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	return done
}

// waitExit waits for a background berthctl and returns its exit code.
func waitExit(t *testing.T, cmd *exec.Cmd, done <-chan struct{}, timeout time.Duration) int {
	t.Helper()
	select {
	case <-done:
		return cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("berthctl %s did not exit within %v", strings.Join(cmd.Args[1:], " "), timeout)
		return -1
	}
}

// taskStatus returns the STATUS column of `tasks ls` for id, or "" when
// id has no task.
func (c *ctl) taskStatus(id string) string {
	c.t.Helper()
	for _, line := range strings.Split(c.ok("tasks", "ls"), "\n")[1:] {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == id {
			return strings.Join(f[2:], " ")
		}
	}
	return ""
}

func lines(s string) []string { return strings.Fields(s) }

// TestCtlCommands types each command group and checks what it prints and
// how it exits.
func TestCtlCommands(t *testing.T) {
	d := newDaemon(t)
	for _, ns := range []string{"default", "ctl-ns", "ctl-env"} {
		d.nsContext(ns) // remembered for cgroup cleanup
	}
	c := newCtl(t, d)
	rootfs := busyboxLower(t)

	t.Run("version", func(t *testing.T) {
		out := c.ok("version")
		if !strings.Contains(out, "Client:\n  Version: v") || !strings.Contains(out, "Server:\n  Version: v") {
			t.Errorf("version: want client and server versions, got\n%s", out)
		}
	})

	t.Run("namespaces", func(t *testing.T) {
		c.ok("namespaces", "create", "ctl-ns", "team=a")
		out := c.ok("namespaces", "ls")
		if !strings.HasPrefix(out, "NAME") || !strings.Contains(out, "ctl-ns") || !strings.Contains(out, "team=a") {
			t.Errorf("namespaces ls:\n%s", out)
		}
		if got := c.ok("ns", "ls", "-q"); !slices.Contains(lines(got), "ctl-ns") {
			t.Errorf("namespaces ls -q: %q", got)
		}
		c.prints("owner=me,team=a\n", "namespaces", "label", "ctl-ns", "owner=me")
		c.prints("owner=me\n", "namespaces", "label", "ctl-ns", "team=")
		c.prints("owner=me\n", "namespaces", "label", "ctl-ns")
		c.ok("-n", "ctl-ns", "containers", "create", "--rootfs", rootfs, "--read-only", "held", "true")
		c.fails(1, []string{`"ctl-ns"`, "holds 1 container"}, "namespaces", "rm", "ctl-ns")
		c.ok("-n", "ctl-ns", "containers", "rm", "held")
		c.prints("ctl-ns\n", "namespaces", "rm", "ctl-ns")
		if got := c.ok("ns", "ls", "-q"); slices.Contains(lines(got), "ctl-ns") {
			t.Errorf("ctl-ns still listed after rm: %q", got)
		}
	})

	t.Run("containers", func(t *testing.T) {
		c.ok("containers", "create", "--rootfs", rootfs, "--read-only", "--label", "role=web", "--env", "A=1", "web", "sleep", "100")
		c.ok("containers", "create", "--rootfs", rootfs, "--read-only", "db", "true")
		c.fails(1, []string{"web", "already exists"}, "containers", "create", "--rootfs", rootfs, "web", "true")

		out := c.ok("containers", "ls")
		rows := strings.Split(strings.TrimSpace(out), "\n")
		if len(rows) != 3 || !strings.HasPrefix(rows[0], "CONTAINER") || !strings.Contains(out, "role=web") {
			t.Errorf("containers ls:\n%s", out)
		}
		if got := lines(c.ok("containers", "ls", "-q")); !slices.Equal(got, []string{"db", "web"}) {
			t.Errorf("containers ls -q: %q", got)
		}
		if got := lines(c.ok("containers", "ls", "-q", "labels.role==web")); !slices.Equal(got, []string{"web"}) {
			t.Errorf("containers ls -q labels.role==web: %q", got)
		}

		var info struct {
			ID     string            `json:"id"`
			Labels map[string]string `json:"labels"`
			Spec   specs.Spec        `json:"spec"`
		}
		if err := json.Unmarshal([]byte(c.ok("containers", "info", "web")), &info); err != nil {
			t.Fatalf("containers info: not JSON: %v", err)
		}
		if info.ID != "web" || info.Labels["role"] != "web" || info.Spec.Process == nil ||
			!slices.Equal(info.Spec.Process.Args, []string{"sleep", "100"}) || !slices.Contains(info.Spec.Process.Env, "A=1") ||
			info.Spec.Root == nil || info.Spec.Root.Path != rootfs || !info.Spec.Root.Readonly {
			t.Errorf("containers info: %+v, process %+v, root %+v", info, info.Spec.Process, info.Spec.Root)
		}

		c.prints("role=web,tier=1\n", "containers", "label", "web", "tier=1")
		c.prints("tier=1\n", "containers", "label", "web", "role=")
		c.prints("tier=1\n", "containers", "label", "web")

		c.ok("containers", "rm", "web", "db")
		c.prints("", "containers", "ls", "-q")
		c.fails(1, []string{"web", "not found"}, "containers", "rm", "web")
	})

	t.Run("run", func(t *testing.T) {
		r := c.run("run", "--rm", "--read-only", "--rootfs", rootfs, "hello", "echo", "hello")
		if r.code != 0 || r.stdout != "hello\n" {
			t.Errorf("run echo hello: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		r = c.run("run", "--rm", "--read-only", "--rootfs", rootfs, "three", "sh", "-c", "echo oops >&2; exit 3")
		if r.code != 3 || r.stderr != "oops\n" {
			t.Errorf("run exit 3: exit %d, stderr %q", r.code, r.stderr)
		}
		// -t without a terminal (stdin is /dev/null, output pipes).
		c.fails(1, []string{"-t needs a terminal"}, "run", "--rm", "-t", "--read-only", "--rootfs", rootfs, "notty", "sh")
		c.prints("", "containers", "ls", "-q")
	})

	t.Run("detached", func(t *testing.T) {
		pid := strings.TrimSpace(c.ok("run", "-d", "--read-only", "--rootfs", rootfs, "bg", "sh", "-c", "while :; do sleep 0.1; done"))
		out := c.ok("tasks", "ls")
		if !strings.HasPrefix(out, "TASK") || c.taskStatus("bg") != "RUNNING" || !strings.Contains(out, pid) {
			t.Errorf("tasks ls (init pid %s):\n%s", pid, out)
		}
		if got := lines(c.ok("tasks", "ls", "-q")); !slices.Equal(got, []string{"bg"}) {
			t.Errorf("tasks ls -q: %q", got)
		}
		ps := c.ok("tasks", "ps", "bg")
		if !strings.HasPrefix(ps, "PID") || !slices.Contains(lines(ps), pid) {
			t.Errorf("tasks ps: want init pid %s in\n%s", pid, ps)
		}

		var all []map[string]any
		if err := json.Unmarshal([]byte(c.ok("tasks", "metrics", "--format", "json", "bg")), &all); err != nil || len(all) != 1 {
			t.Fatalf("tasks metrics --format json: %d objects, %v; want one", len(all), err)
		}
		m := all[0]
		for _, k := range []string{"cpu_usage_ns", "memory_usage_bytes", "pids_current"} {
			if v, _ := m[k].(float64); v <= 0 {
				t.Errorf("tasks metrics: %s = %v, want > 0 (all: %v)", k, m[k], m)
			}
		}

		c.ok("tasks", "pause", "bg")
		if s := c.taskStatus("bg"); s != "PAUSED" {
			t.Errorf("after pause: status %q", s)
		}
		c.ok("tasks", "resume", "bg")
		if s := c.taskStatus("bg"); s != "RUNNING" {
			t.Errorf("after resume: status %q", s)
		}

		r := c.run("tasks", "exec", "--exec-id", "e1", "bg", "sh", "-c", "echo from exec; exit 4")
		if r.code != 4 || r.stdout != "from exec\n" {
			t.Errorf("tasks exec: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		c.fails(2, []string{"--exec-id"}, "tasks", "exec", "bg", "true")

		c.ok("tasks", "kill", "-s", "KILL", "bg")
		c.prints("137\n", "tasks", "wait", "bg")
		if s := c.taskStatus("bg"); s != "STOPPED (137)" {
			t.Errorf("after kill: status %q", s)
		}
		c.fails(1, []string{"bg"}, "containers", "rm", "bg") // it still has a task
		c.prints("bg\t137\n", "tasks", "rm", "bg")
		c.prints("", "tasks", "ls", "-q")
		c.ok("containers", "rm", "bg")
	})

	t.Run("events", func(t *testing.T) {
		var out testutil.Buffer
		cmd := c.command(nil, "-a", c.address, "events", `topic=="/tasks/exit"`)
		cmd.Stdout, cmd.Stderr = &out, &out
		done := background(t, cmd)
		// Nothing says when the subscription is in place: run a container
		// until one of its exits shows, each with an id of its own.
		// An exit seen late, after the next run began, counts as well.
		var seen bool
		var ran []string
		for i := 0; i < 20 && !seen; i++ {
			id := "ev" + string(rune('a'+i))
			c.ok("run", "--rm", "--read-only", "--rootfs", rootfs, id, "true")
			ran = append(ran, id)
			deadline := time.Now().Add(500 * time.Millisecond)
			for !seen && time.Now().Before(deadline) {
				exits := exitEvents(t, out.String())
				seen = slices.ContainsFunc(ran, func(id string) bool { _, ok := exits[id]; return ok })
				time.Sleep(20 * time.Millisecond)
			}
		}
		if !seen {
			t.Fatalf("events printed no exit of the containers run:\n%s", out.String())
		}
		if got := c.run("run", "--rm", "--read-only", "--rootfs", rootfs, "evexit", "sh", "-c", "exit 4"); got.code != 4 {
			t.Fatalf("run exit 4: %+v", got)
		}
		eventually(t, time.Minute, "the exit event of evexit", func() bool {
			_, ok := exitEvents(t, out.String())["evexit"]
			return ok
		})
		if got := exitEvents(t, out.String())["evexit"]; got != 4 {
			t.Errorf("events: exit status of evexit %d, want 4", got)
		}
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Errorf("berthctl events did not stop on SIGTERM")
		}
	})

	t.Run("plugins", func(t *testing.T) {
		out := c.ok("plugins", "ls")
		if !strings.HasPrefix(out, "TYPE") {
			t.Errorf("plugins ls:\n%s", out)
		}
		for _, svc := range []string{"namespaces", "containers", "tasks", "events"} {
			if !strings.Contains(out, svc) {
				t.Errorf("plugins ls does not list %s:\n%s", svc, out)
			}
		}
	})

	t.Run("environment", func(t *testing.T) {
		env := []string{"BERTH_ADDRESS=" + c.address, "BERTH_NAMESPACE=ctl-env"}
		if r := c.runEnv(env, "containers", "create", "--rootfs", rootfs, "--read-only", "from-env", "true"); r.code != 0 {
			t.Fatalf("create with BERTH_ADDRESS and BERTH_NAMESPACE: %+v", r)
		}
		if got := lines(c.ok("-n", "ctl-env", "containers", "ls", "-q")); !slices.Equal(got, []string{"from-env"}) {
			t.Errorf("BERTH_NAMESPACE not honoured: ctl-env holds %q", got)
		}
		c.prints("", "containers", "ls", "-q")
		// Flags win over the environment.
		if r := c.runEnv(env, "-n", "default", "containers", "ls", "-q"); r.code != 0 || r.stdout != "" {
			t.Errorf("-n over BERTH_NAMESPACE: %+v", r)
		}
		bogus := []string{"BERTH_ADDRESS=/nonexistent/berth.sock", "BERTH_NAMESPACE=ctl-env"}
		if r := c.runEnv(bogus, "-a", c.address, "containers", "ls", "-q"); r.code != 0 || r.stdout != "from-env\n" {
			t.Errorf("-a over BERTH_ADDRESS: %+v", r)
		}
		c.check(c.runEnv(bogus, "containers", "ls"), 1, []string{"/nonexistent/berth.sock"}, []string{"containers", "ls"})
		c.ok("-n", "ctl-env", "containers", "rm", "from-env")
	})

	t.Run("usage errors", func(t *testing.T) {
		for _, args := range [][]string{
			{"version", "--bogus"},
			{"containers", "ls", "--bogus"},
			{"containers", "create"},
			{"containers", "create", "imagewithoutid"},
			{"tasks", "wait"},
			{"tasks", "kill"},
			{"tasks", "kill", "-s", "BOGUS", "x"},
			{"tasks", "kill", "-s", "99", "x"},
			{"run", "--rm", "-d", "--rootfs", rootfs, "x"},
			{"frobnicate"},
			{"tasks", "frobnicate"},
			{"version", "extra"},
		} {
			r := c.run(args...)
			if r.code != 2 || !strings.HasPrefix(r.stderr, "berthctl: ") {
				t.Errorf("berthctl %s: exit %d, stderr %q; want 2 and a message", strings.Join(args, " "), r.code, r.stderr)
			}
		}
		if r := c.run("tasks"); r.code != 0 || !strings.Contains(r.stdout, "Available Commands") {
			t.Errorf("berthctl tasks: want its help and exit 0, got %+v", r)
		}
	})

	t.Run("no daemon", func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "berth.sock")
		for _, args := range [][]string{{"version"}, {"containers", "ls"}, {"tasks", "ls"}} {
			r := c.runEnv(nil, append([]string{"-a", sock}, args...)...)
			c.check(r, 1, []string{"is berthd running at " + sock}, args)
		}
	})
}

// exitEvents parses the lines of `berthctl events 'topic=="/tasks/exit"'`
// (TIME NAMESPACE TOPIC PAYLOAD) into the exit status of each container;
// a line of another shape fails the test.
func exitEvents(t *testing.T, out string) map[string]int {
	t.Helper()
	exits := map[string]int{}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		f := strings.SplitN(line, " ", 4)
		var payload struct {
			ContainerID string `json:"containerId"`
			ExitStatus  int    `json:"exitStatus"`
		}
		if len(f) != 4 || f[1] != "default" || f[2] != "/tasks/exit" || json.Unmarshal([]byte(f[3]), &payload) != nil {
			t.Fatalf("events: line %q is not TIME default /tasks/exit {PAYLOAD}", line)
		}
		if _, err := time.Parse(time.RFC3339Nano, f[0]); err != nil {
			t.Errorf("events: line %q: %v", line, err)
		}
		exits[payload.ContainerID] = payload.ExitStatus
	}
	return exits
}

// TestCtlRunForwardsSIGTERM sends SIGTERM to a foreground `berthctl run`:
// the container gets it, berthctl exits with the container's code, and
// --rm removes the container.
func TestCtlRunForwardsSIGTERM(t *testing.T) {
	d := newDaemon(t)
	d.nsContext("default")
	c := newCtl(t, d)
	cmd := c.command(nil, "-a", c.address, "run", "--rm", "--read-only", "--rootfs", busyboxLower(t), "sig",
		"sh", "-c", "trap 'exit 7' TERM; while :; do sleep 0.1; done")
	var out testutil.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := background(t, cmd)
	// Two processes (sh and a sleep) mean the loop, after the trap, runs.
	eventually(t, time.Minute, "the container's loop", func() bool {
		r := c.run("tasks", "ps", "sig")
		return r.code == 0 && len(strings.Split(strings.TrimSpace(r.stdout), "\n")) >= 3
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, cmd, done, time.Minute); code != 7 {
		t.Errorf("berthctl run: exit %d after SIGTERM, want 7; output: %s", code, out.String())
	}
	if got := c.ok("containers", "ls", "-q"); got != "" {
		t.Errorf("run --rm left containers: %q", got)
	}
}

// pty is a pseudo-terminal that a test types into and reads from.
type pty struct {
	t      *testing.T
	master console.Console
	slave  *os.File
	out    testutil.Buffer // everything the master read
	read   int             // how much of out expect consumed
}

func newPty(t *testing.T) *pty {
	t.Helper()
	master, slavePath, err := console.NewPty()
	if err != nil {
		t.Fatal(err)
	}
	slave, err := os.OpenFile(slavePath, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		t.Fatal(err)
	}
	p := &pty{t: t, master: master, slave: slave}
	if err := master.Resize(console.WinSize{Height: 24, Width: 80}); err != nil {
		t.Fatal(err)
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		io.Copy(&p.out, master) // ends with EIO when the slave is closed by all
	}()
	t.Cleanup(func() {
		slave.Close()
		master.Close()
		<-copied
	})
	return p
}

// attach makes the slave cmd's stdio and controlling terminal.
func (p *pty) attach(cmd *exec.Cmd) {
	cmd.Stdin, cmd.Stdout, cmd.Stderr = p.slave, p.slave, p.slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
}

func (p *pty) typeIn(s string) {
	p.t.Helper()
	if _, err := p.master.Write([]byte(s)); err != nil {
		p.t.Fatal(err)
	}
}

// shown is what the terminal showed, without carriage returns: berthctl's
// raw mode keeps output processing (as containerd's console does), so the
// container's "\r\n" arrives as "\r\r\n".
func (p *pty) shown() string { return strings.ReplaceAll(p.out.String(), "\r", "") }

// expect waits until the terminal shows want after what earlier expects
// consumed, and consumes up to it.
func (p *pty) expect(want string) {
	p.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		all := p.shown()
		if i := strings.Index(all[p.read:], want); i >= 0 {
			p.read += i + len(want)
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("terminal did not show %q; it shows %q", want, all[p.read:])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCtlRunTTY runs an interactive shell under a real pty: typing reaches
// it, its output comes back, a window resize reaches it, Ctrl-C interrupts
// its foreground command, and its exit code is berthctl's.
func TestCtlRunTTY(t *testing.T) {
	d := newDaemon(t)
	d.nsContext("default")
	c := newCtl(t, d)
	p := newPty(t)
	cmd := c.command(nil, "-a", c.address, "run", "--rm", "-t", "-i", "--read-only", "--rootfs", busyboxLower(t), "tty", "sh")
	p.attach(cmd)
	done := background(t, cmd)

	p.expect("# ") // the prompt: the shell reads the terminal
	p.typeIn("echo $((6*7))\n")
	p.expect("42\n")

	p.resizeUntilSeen(cmd, 33, 101)

	// The job says it runs (the terminal is its by then) and becomes
	// sleep; the terminal echoes "$((3+4))", the job prints "7".
	p.typeIn("sh -c 'echo up $((3+4)); exec sleep 100'\n")
	p.expect("up 7\n")
	p.typeIn("\x03")
	p.typeIn("echo alive $((1+2))\n")
	p.expect("alive 3\n") // not in 100 s: Ctrl-C ended sleep, the shell lives

	p.typeIn("exit 5\n")
	if code := waitExit(t, cmd, done, time.Minute); code != 5 {
		t.Errorf("berthctl run -t: exit %d, want 5; terminal: %q", code, p.shown())
	}
	if got := c.ok("containers", "ls", "-q"); got != "" {
		t.Errorf("run --rm -t left containers: %q", got)
	}
}

// readLine waits for the next line on the terminal and consumes it.
func (p *pty) readLine() string {
	p.t.Helper()
	start := p.read
	p.expect("\n")
	return p.shown()[start : p.read-1]
}

// TestCtlAttach attaches to tasks started detached, by `run -d` and by
// `tasks start -d`: output after the attach arrives, stdin given with -i
// reaches the task, and attach exits with the task's code. `tasks rm`
// removes the FIFOs that the detached start left.
func TestCtlAttach(t *testing.T) {
	d := newDaemon(t)
	d.nsContext("default")
	c := newCtl(t, d)
	rootfs := busyboxLower(t)

	fifoDirs := func() []string {
		dirs, _ := filepath.Glob(filepath.Join(cio.DefaultFIFODir, "attach-*"))
		return dirs
	}
	removeFIFODirs := func() {
		for _, dir := range fifoDirs() {
			os.RemoveAll(dir)
		}
	}
	removeFIFODirs() // of an earlier run that failed
	t.Cleanup(removeFIFODirs)

	// Output: the task prints until a file in /dev/shm appears.
	c.ok("run", "-d", "--read-only", "--rootfs", rootfs, "attach-out",
		"sh", "-c", "i=0; while [ ! -e /dev/shm/stop ]; do echo tick $i; i=$((i+1)); sleep 0.05; done; echo bye; exit 6")
	if len(fifoDirs()) != 1 {
		t.Errorf("run -d made no FIFO folder to attach to")
	}
	var out testutil.Buffer
	cmd := c.command(nil, "-a", c.address, "tasks", "attach", "attach-out")
	cmd.Stdout, cmd.Stderr = &out, &out
	done := background(t, cmd)
	eventually(t, time.Minute, "ticks through attach", func() bool { return strings.Count(out.String(), "tick") >= 3 })
	r := c.run("tasks", "exec", "--exec-id", "stop", "attach-out", "touch", "/dev/shm/stop")
	if r.code != 0 {
		t.Fatalf("exec touch: %+v", r)
	}
	if code := waitExit(t, cmd, done, time.Minute); code != 6 {
		t.Errorf("tasks attach: exit %d, want the task's 6", code)
	}
	if !strings.HasSuffix(out.String(), "bye\n") {
		t.Errorf("tasks attach: output does not end with the task's last line: %q", out.String())
	}

	// Stdin: a container created apart, started with tasks start -d -i.
	c.ok("containers", "create", "--read-only", "--rootfs", rootfs, "attach-in", "sh", "-c", "read line; echo got $line; exit 9")
	c.ok("tasks", "start", "-d", "-i", "attach-in")
	cmd = c.command(nil, "-a", c.address, "tasks", "attach", "attach-in")
	cmd.Stdin = strings.NewReader("hello\n")
	var in testutil.Buffer
	cmd.Stdout, cmd.Stderr = &in, &in
	done = background(t, cmd)
	if code := waitExit(t, cmd, done, time.Minute); code != 9 {
		t.Errorf("tasks attach -i: exit %d, want 9; output %q", code, in.String())
	}
	if in.String() != "got hello\n" {
		t.Errorf("tasks attach: output %q, want the line typed in", in.String())
	}

	for _, id := range []string{"attach-out", "attach-in"} {
		c.ok("tasks", "rm", id)
		c.ok("containers", "rm", id)
	}
	if left := fifoDirs(); len(left) > 0 {
		t.Errorf("tasks rm left FIFO folders: %v", left)
	}
}

// TestCtlSocketPermission runs berthctl as nobody: the socket refuses it
// with a message, and the daemon serves root afterwards.
func TestCtlSocketPermission(t *testing.T) {
	d := newDaemon(t)
	c := newCtl(t, d)
	// The state folder is 0700: open it to all, so that it is the socket's
	// own mode that refuses nobody.
	if err := os.Chmod(d.state, 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "berthctl-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	data, err := os.ReadFile(c.bin)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "berthctl")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}

	nobody := &ctl{t: t, bin: bin, address: d.address}
	cmd := nobody.command(nil, "-a", d.address, "version")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Run()
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("berthctl version as nobody: exit %d, want 1; stderr %q", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "permission denied") || !strings.Contains(stderr.String(), d.address) {
		t.Errorf("berthctl version as nobody: stderr %q does not name the socket and the refusal", stderr.String())
	}
	if !strings.Contains(stdout.String(), "Client:") || strings.Contains(stdout.String(), "Server:") {
		t.Errorf("berthctl version as nobody: stdout %q, want the client's version only", stdout.String())
	}
	if out := c.ok("version"); !strings.Contains(out, "Server:") {
		t.Errorf("daemon after the refused connection: %q", out)
	}
}
