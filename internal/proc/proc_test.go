package proc

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestAlive(t *testing.T) {
	if !Alive(os.Getpid()) {
		t.Fatal("the test process is not alive")
	}
	cmd := exec.Command("/bin/sh", "-c", "exit 0")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	// Not reaped yet: once it exits it is a zombie, which has exited.
	deadline := time.Now().Add(time.Minute)
	for Alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d, exited and not reaped, still alive after a minute", pid)
		}
		if err := exec.Command("/bin/sh", "-c", "sleep 0.01").Run(); err != nil {
			t.Fatal(err)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if Alive(pid) {
		t.Fatalf("pid %d alive after it was reaped", pid)
	}
}

func TestStateAndChildren(t *testing.T) {
	cmd := exec.Command("/bin/sh", "-c", "sleep 60 & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var kids []int
	deadline := time.Now().Add(time.Minute)
	for len(kids) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the shell's child never showed")
		}
		time.Sleep(5 * time.Millisecond)
		kids = Children(cmd.Process.Pid)
	}
	if len(kids) != 1 {
		t.Fatalf("children %v, want the one sleep", kids)
	}
	t.Cleanup(func() { unix.Kill(kids[0], unix.SIGKILL) })
	if err := unix.Kill(kids[0], unix.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for {
		st, err := State(kids[0])
		if err != nil {
			t.Fatal(err)
		}
		if st == 'T' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("state %c after SIGSTOP, want T", st)
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := State(1 << 30); err == nil {
		t.Error("State of a pid that cannot exist: no error")
	}
}
