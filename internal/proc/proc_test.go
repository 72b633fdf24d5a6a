package proc

import (
	"os"
	"os/exec"
	"testing"
	"time"
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
