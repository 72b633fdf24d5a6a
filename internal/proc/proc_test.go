package proc

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"syscall"
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

func TestWithEnv(t *testing.T) {
	entry := fmt.Sprintf("BERTH_PROC_TEST=%d", os.Getpid())
	cmd := exec.Command("/bin/sh", "-c", "sleep 60 & wait")
	cmd.Env = append(os.Environ(), entry)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // killed with its sleep
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Kill(-cmd.Process.Pid, unix.SIGKILL); cmd.Wait() })
	other := exec.Command("/bin/sh", "-c", "sleep 60")
	other.Env = append(os.Environ(), entry+"0") // a longer value is another entry
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Process.Kill(); other.Wait() })
	var found []int
	deadline := time.Now().Add(time.Minute)
	for len(found) < 2 { // the shell and its sleep, which inherits the entry
		if time.Now().After(deadline) {
			t.Fatalf("found %v, want the shell %d and its sleep", found, cmd.Process.Pid)
		}
		time.Sleep(5 * time.Millisecond)
		found = WithEnv(entry)
	}
	if len(found) != 2 || !slices.Contains(found, cmd.Process.Pid) || slices.Contains(found, other.Process.Pid) {
		t.Fatalf("found %v, want the shell %d and its sleep, not %d", found, cmd.Process.Pid, other.Process.Pid)
	}
	if slices.Contains(WithEnv(entry), os.Getpid()) {
		t.Fatal("the test process, whose environment lacks the entry, was found")
	}
}

func TestWithArgPrefix(t *testing.T) {
	prefix := fmt.Sprintf("/berth-proc-test-%d/", os.Getpid())
	// $0 of a shell that waits in its builtin read, on a pipe the test
	// holds: a shell that forked (a sleep) would show a child with its
	// own arguments until the child's exec.
	cmd := exec.Command("/bin/sh", "-c", "read x", prefix+"x")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close() })
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if found := WithArgPrefix(prefix); !slices.Equal(found, []int{cmd.Process.Pid}) {
		t.Fatalf("found %v, want %d", found, cmd.Process.Pid)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if found := WithArgPrefix(prefix); len(found) != 0 {
		t.Fatalf("found %v after the process exited", found)
	}
}
