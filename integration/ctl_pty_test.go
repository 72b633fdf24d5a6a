package integration

import (
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/console"
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

	p.typeIn("sleep 100\n")
	p.expect("sleep 100\n")
	time.Sleep(200 * time.Millisecond) // let the shell start sleep
	p.typeIn("\x03")
	p.typeIn("echo alive $((1+2))\n")
	p.expect("alive 3\n") // not in 100 s: Ctrl-C ended sleep, the shell lives

	p.typeIn("exit 3\n")
	if code := waitExit(t, cmd, done, 10*time.Second); code != 3 {
		t.Errorf("berthctl run -t -i: exit %d, want 3; terminal: %q", code, p.shown())
	}
	if got := c.ok("-n", ns, "containers", "ls", "-q"); got != "" {
		t.Errorf("run --rm -t left containers: %q", got)
	}
}

// resizeUntilSeen resizes the terminal to rows×cols and types `stty size`
// until the shell inside sees that size: the resize travels berthctl →
// daemon → shim.
func (p *pty) resizeUntilSeen(cmd *exec.Cmd, rows, cols uint16) {
	p.t.Helper()
	if err := p.master.Resize(console.WinSize{Height: rows, Width: cols}); err != nil {
		p.t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGWINCH) // the kernel sends one too
	want := fmt.Sprintf("%d %d", rows, cols)
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.typeIn("stty size\n")
		p.expect("stty size\n")
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
// a terminal. An interactive shell (run -d -t -i) gets what is typed and
// its exit code is attach's. A ticking task (run -d -t) outlives an
// attaching berthctl that is killed (a detach), and a second attach sees
// it go on. (A detach from a task with -i ends its stdin: the shim reads
// EOF once no writer holds the FIFO, as package io/stdio documents.)
func TestCtlPtyAttach(t *testing.T) {
	d := newDaemon(t)
	const ns = "ctl-pty-attach"
	d.nsContext(ns)
	c := newCtl(t, d)
	img := ctlImage(t, c, ns)
	remove := func(id string) {
		c.run("-n", ns, "tasks", "rm", "-f", id)
		c.run("-n", ns, "containers", "rm", id)
		c.run("-n", ns, "snapshots", "rm", id)
	}
	attach := func(p *pty, id string) (*exec.Cmd, <-chan struct{}) {
		cmd := c.command(nil, "-a", c.address, "-n", ns, "tasks", "attach", id)
		p.attach(cmd)
		return cmd, background(t, cmd)
	}

	t.Run("interactive", func(t *testing.T) {
		c.ok("-n", ns, "run", "-d", "-t", "-i", "-u", "root", img, "pty-sh", "sh")
		t.Cleanup(func() { remove("pty-sh") })
		p := newPty(t)
		cmd, done := attach(p, "pty-sh")
		p.typeIn("echo attached $((2*3))\n")
		p.expect("attached 6\n")
		p.resizeUntilSeen(cmd, 30, 90)
		p.typeIn("exit 4\n")
		if code := waitExit(t, cmd, done, 10*time.Second); code != 4 {
			t.Errorf("tasks attach: exit %d, want the shell's 4; terminal: %q", code, p.shown())
		}
		if s := c.taskStatusIn(ns, "pty-sh"); s != "STOPPED (4)" {
			t.Errorf("after exit 4, the task is %q", s)
		}
	})

	t.Run("detach", func(t *testing.T) {
		c.ok("-n", ns, "run", "-d", "-t", img, "pty-tick", "sh", "-c", "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.05; done")
		t.Cleanup(func() { remove("pty-tick") })
		first := newPty(t)
		cmd, done := attach(first, "pty-tick")
		first.expect("tick ")
		first.readLine()
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		waitExit(t, cmd, done, 10*time.Second)
		if s := c.taskStatusIn(ns, "pty-tick"); s != "RUNNING" {
			t.Fatalf("after the attaching berthctl was killed, the task is %q", s)
		}
		second := newPty(t)
		cmd, done = attach(second, "pty-tick")
		second.expect("tick ")
		second.readLine()
		second.expect("tick ") // it goes on
		c.ok("-n", ns, "tasks", "kill", "-s", "KILL", "pty-tick")
		if code := waitExit(t, cmd, done, 10*time.Second); code != 137 {
			t.Errorf("tasks attach of a killed task: exit %d, want 137", code)
		}
	})
}

// taskStatusIn returns the STATUS column of `tasks ls` in ns for id.
func (c *ctl) taskStatusIn(ns, id string) string {
	c.t.Helper()
	return strings.TrimSpace(c.ok("-n", ns, "tasks", "ls", "--format", "{{upper .status}}{{with .exit_status}} ({{.}}){{end}}", "id=="+id))
}
