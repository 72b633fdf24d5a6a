package integration

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/console"

	"github.com/berthrt/berth/internal/testutil"
)

// TestCtlPtyRunImage runs a shell of an image interactively under a real
// pty (console.NewPty, see newPty): typing reaches it and its output comes
// back, a window resize reaches `stty size` inside, Ctrl-C interrupts its
// foreground command without ending it, and its exit code is berthctl's.
func TestCtlPtyRunImage(t *testing.T) {
	d := newDaemon(t)
	const ns = "ctl-pty"
	d.nsContext(ns)
	c := newCtl(t, d)
	img := ctlImage(t, c, ns)
	p := newPty(t)
	cmd := c.command(nil, "-a", c.address, "-n", ns, "run", "--rm", "-t", "-i", "-u", "root", img, "pty-sh", "sh")
	p.attach(cmd)
	done := background(t, cmd)

	p.expect("# ") // the prompt: the shell reads the terminal
	p.typeIn("echo $((6*7))\n")
	p.expect("42\n")

	p.resizeUntilSeen(cmd, 33, 101)
	p.resizeUntilSeen(cmd, 20, 60)

	// The job says it runs (the terminal is its by then) and becomes
	// sleep; the terminal echoes "$((3+4))", the job prints "7".
	p.typeIn("sh -c 'echo up $((3+4)); exec sleep 100'\n")
	p.expect("up 7\n")
	p.typeIn("\x03")
	p.typeIn("echo alive $((1+2))\n")
	p.expect("alive 3\n") // not in 100 s: Ctrl-C ended sleep, the shell lives

	p.typeIn("exit 3\n")
	if code := waitExit(t, cmd, done, time.Minute); code != 3 {
		t.Errorf("berthctl run -t -i: exit %d, want 3; terminal: %q", code, p.shown())
	}
	if got := c.ok("-n", ns, "containers", "ls", "-q"); got != "" {
		t.Errorf("run --rm -t left containers: %q", got)
	}
}

// resizeUntilSeen resizes the terminal to rows×cols and asks `stty size`
// until the shell inside sees that size: the resize travels berthctl →
// daemon → shim.
func (p *pty) resizeUntilSeen(cmd *exec.Cmd, rows, cols uint16) {
	p.t.Helper()
	if err := p.master.Resize(console.WinSize{Height: rows, Width: cols}); err != nil {
		p.t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGWINCH) // the kernel sends one too
	want := fmt.Sprintf("%d %d", rows, cols)
	deadline := time.Now().Add(time.Minute)
	for {
		// The marker s2z is in the output only, never in the echo of what
		// is typed, which a line-editing shell may redraw in pieces.
		p.typeIn("echo s$((1+1))z $(stty size)\n")
		p.expect("s2z ")
		line := p.readLine()
		if line == want {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("stty size in the container: %q, want %s", line, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCtlPtyAttach attaches from a real pty to tasks started detached with
// a terminal. An interactive shell (run -d -t -i) gets what is typed, its
// exit code is attach's, and it outlives attaches that end: a detach with
// Ctrl-P Ctrl-Q (berthctl exits 0) and an attaching berthctl killed with
// SIGKILL are no end of its stdin, and the next attach types into the same
// shell. A ticking task (run -d -t) goes on while nobody is attached.
func TestCtlPtyAttach(t *testing.T) {
	d := newDaemon(t)
	const ns = "ctl-pty-attach"
	d.nsContext(ns)
	c := newCtl(t, d)
	img := ctlImage(t, c, ns)
	remove := func(id string) {
		c.run("-n", ns, "tasks", "rm", "-f", id)
		c.run("-n", ns, "containers", "rm", id)
	}
	attach := func(p *pty, id string) (*exec.Cmd, <-chan struct{}) {
		cmd := c.command(nil, "-a", c.address, "-n", ns, "tasks", "attach", id)
		p.attach(cmd)
		return cmd, background(t, cmd)
	}
	// typeAndSee types a command whose output differs from its echo.
	typeAndSee := func(p *pty, word string, n int) {
		t.Helper()
		p.typeIn(fmt.Sprintf("echo %s $((%d*%d))\n", word, n, n))
		p.expect(fmt.Sprintf("%s %d\n", word, n*n))
	}
	// detach types Ctrl-P Ctrl-Q: berthctl exits 0 saying say, and the
	// task id runs on.
	detach := func(p *pty, cmd *exec.Cmd, done <-chan struct{}, id, say string) {
		t.Helper()
		p.typeIn("\x10\x11")
		if code := waitExit(t, cmd, done, time.Minute); code != 0 {
			t.Fatalf("berthctl after Ctrl-P Ctrl-Q: exit %d, want 0; terminal: %q", code, p.shown())
		}
		p.expect(say)
		if s := c.taskStatusIn(ns, id); s != "RUNNING" {
			t.Fatalf("after a detach, the task is %q", s)
		}
	}
	// exit ends the shell with code, which is berthctl's.
	exit := func(p *pty, cmd *exec.Cmd, done <-chan struct{}, code int) {
		t.Helper()
		p.typeIn(fmt.Sprintf("exit %d\n", code))
		if got := waitExit(t, cmd, done, time.Minute); got != code {
			t.Errorf("berthctl: exit %d, want the shell's %d; terminal: %q", got, code, p.shown())
		}
	}

	t.Run("interactive", func(t *testing.T) {
		c.ok("-n", ns, "run", "-d", "-t", "-i", "-u", "root", img, "pty-sh", "sh")
		t.Cleanup(func() { remove("pty-sh") })

		p := newPty(t)
		cmd, done := attach(p, "pty-sh")
		typeAndSee(p, "one", 2)
		p.resizeUntilSeen(cmd, 30, 90)
		detach(p, cmd, done, "pty-sh", "berthctl: detached; task pty-sh keeps running")

		p = newPty(t)
		cmd, done = attach(p, "pty-sh")
		typeAndSee(p, "two", 3) // the same shell: its stdin did not end
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		waitExit(t, cmd, done, time.Minute)

		p = newPty(t)
		cmd, done = attach(p, "pty-sh")
		typeAndSee(p, "three", 4) // a killed attach did not end it either
		exit(p, cmd, done, 4)
		if s := c.taskStatusIn(ns, "pty-sh"); s != "STOPPED (4)" {
			t.Errorf("after exit 4, the task is %q", s)
		}
	})

	t.Run("foreground run detaches", func(t *testing.T) {
		t.Cleanup(func() { remove("pty-fg") })
		p := newPty(t)
		cmd := c.command(nil, "-a", c.address, "-n", ns, "run", "--rm", "-t", "-i", "-u", "root", img, "pty-fg", "sh")
		p.attach(cmd)
		done := background(t, cmd)
		p.expect("# ")
		typeAndSee(p, "fg", 5)
		detach(p, cmd, done, "pty-fg", "--rm does not apply after a detach: the container stays")

		p = newPty(t)
		cmd, done = attach(p, "pty-fg")
		typeAndSee(p, "back", 6)
		exit(p, cmd, done, 5)
	})

	t.Run("detach keys off", func(t *testing.T) {
		c.ok("-n", ns, "run", "-d", "-t", "-i", "-u", "root", img, "pty-keys", "sh")
		t.Cleanup(func() { remove("pty-keys") })
		p := newPty(t)
		cmd := c.command(nil, "-a", c.address, "-n", ns, "tasks", "attach", "--detach-keys", "", "pty-keys")
		p.attach(cmd)
		done := background(t, cmd)
		typeAndSee(p, "on", 7)
		// Ctrl-P Ctrl-Q go to the shell (Ctrl-C drops the line they
		// made); the attach stays, the shell answers through it.
		p.typeIn("\x10\x11")
		p.typeIn("\x03")
		typeAndSee(p, "still", 8)
		exit(p, cmd, done, 6)
	})

	t.Run("ticking task", func(t *testing.T) {
		c.ok("-n", ns, "run", "-d", "-t", img, "pty-tick", "sh", "-c", "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.05; done")
		t.Cleanup(func() { remove("pty-tick") })
		first := newPty(t)
		cmd, done := attach(first, "pty-tick")
		first.expect("tick ")
		first.readLine()
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		waitExit(t, cmd, done, time.Minute)
		if s := c.taskStatusIn(ns, "pty-tick"); s != "RUNNING" {
			t.Fatalf("after the attaching berthctl was killed, the task is %q", s)
		}
		second := newPty(t)
		cmd, done = attach(second, "pty-tick")
		second.expect("tick ")
		second.readLine()
		second.expect("tick ") // it goes on
		c.ok("-n", ns, "tasks", "kill", "-s", "KILL", "pty-tick")
		if code := waitExit(t, cmd, done, time.Minute); code != 137 {
			t.Errorf("tasks attach of a killed task: exit %d, want 137", code)
		}
	})
}

// TestCtlStdinPipes: without a terminal, the end of what is piped into
// `run -i` is the end of the process's stdin (berthctl's client closes it
// after the last byte), while an attaching berthctl that is killed leaves a
// `run -d -i` shell reading, for the next attach.
func TestCtlStdinPipes(t *testing.T) {
	d := newDaemon(t)
	const ns = "ctl-stdin"
	d.nsContext(ns)
	c := newCtl(t, d)
	img := ctlImage(t, c, ns)

	t.Run("run -i ends at the end of the pipe", func(t *testing.T) {
		in := strings.Repeat("data through cat\n", 8<<10) // more than a FIFO holds
		r := c.runIn(strings.NewReader(in), "-n", ns, "run", "--rm", "-i", img, "pipe-cat", "cat")
		if r.code != 0 || r.stdout != in {
			t.Errorf("run -i cat: exit %d, %d bytes of %d out; stderr %q", r.code, len(r.stdout), len(in), r.stderr)
		}
		r = c.runIn(strings.NewReader(""), "-n", ns, "run", "--rm", "-i", img, "pipe-empty", "sh", "-c", "cat; echo end")
		if r.code != 0 || r.stdout != "end\n" {
			t.Errorf("run -i of an empty stdin: exit %d, stdout %q; stderr %q", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("attach goes, the shell stays", func(t *testing.T) {
		c.ok("-n", ns, "run", "-d", "-i", img, "pipe-sh", "sh")
		t.Cleanup(func() {
			c.run("-n", ns, "tasks", "rm", "-f", "pipe-sh")
			c.run("-n", ns, "containers", "rm", "pipe-sh")
		})
		attach := func(stdin io.Reader) (*exec.Cmd, <-chan struct{}, *testutil.Buffer) {
			var out testutil.Buffer
			cmd := c.command(nil, "-a", c.address, "-n", ns, "tasks", "attach", "pipe-sh")
			cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &out
			return cmd, background(t, cmd), &out
		}

		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		cmd, done, out := attach(r)
		r.Close() // berthctl's now
		io.WriteString(w, "echo one $((1+1))\n")
		eventually(t, time.Minute, "the shell to answer", func() bool { return out.String() == "one 2\n" })
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		waitExit(t, cmd, done, time.Minute)

		cmd, done, out = attach(strings.NewReader("echo two $((2+2)); exit 4\n"))
		if code := waitExit(t, cmd, done, time.Minute); code != 4 {
			t.Errorf("tasks attach: exit %d, want the shell's 4; output %q", code, out.String())
		}
		if out.String() != "two 4\n" {
			t.Errorf("the shell answered %q after an attach was killed", out.String())
		}
	})
}

// taskStatusIn returns the STATUS column of `tasks ls` in ns for id.
func (c *ctl) taskStatusIn(ns, id string) string {
	c.t.Helper()
	return strings.TrimSpace(c.ok("-n", ns, "tasks", "ls", "--format", "{{upper .status}}{{with .exit_status}} ({{.}}){{end}}", "id=="+id))
}
