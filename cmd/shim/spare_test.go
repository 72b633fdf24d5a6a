package main

import (
	"io"
	"os"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/internal/jsonlog"
)

// watched starts a process to stand for the daemon and a spare service
// watching it; it returns the process and a channel closed when the spare
// shuts down. With goneFirst, the daemon is killed and reaped before the
// watch begins.
func watched(t *testing.T, goneFirst bool) (*exec.Cmd, *spareService, chan struct{}) {
	t.Helper()
	daemon := exec.Command("sleep", "600")
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		daemon.Process.Kill()
		daemon.Wait()
	})
	pidfd, err := unix.PidfdOpen(daemon.Process.Pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	if goneFirst {
		daemon.Process.Kill()
		daemon.Wait()
	}
	down := make(chan struct{})
	s := &spareService{shutdown: func() { close(down) }}
	if err := watchDaemon(s, pidfd, jsonlog.New(io.Discard, jsonlog.LevelInfo)); err != nil {
		unix.Close(pidfd)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if s.unwatch != nil {
			s.unwatch()
		}
	})
	return daemon, s, down
}

// shutsDown waits, with a generous bound, for the spare to shut down.
func shutsDown(t *testing.T, down chan struct{}, why string) {
	t.Helper()
	select {
	case <-down:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: the spare did not shut down", why)
	}
}

func TestWatchDaemonShutsDownWhenTheDaemonIsKilled(t *testing.T) {
	daemon, _, down := watched(t, false)
	if err := daemon.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	shutsDown(t, down, "daemon SIGKILLed")
}

// A daemon that is gone before the spare watches it (killed while its
// `berth-shim start --spare` was finishing): its pidfd is readable from the
// start, and stays so without a new wake-up, so the watch must look rather
// than wait for one (seen: spares of killed test daemons serving on, their
// pidfd naming a reaped process, with nothing in their log).
func TestWatchDaemonShutsDownWhenTheDaemonIsGoneBefore(t *testing.T) {
	for range 20 {
		_, _, down := watched(t, true)
		shutsDown(t, down, "daemon gone before the watch")
	}
}

// A watch that ends in an error (here: its descriptor closed from under
// it) shuts an unbound spare down, rather than leave it to outlive its
// daemon with nothing watching.
func TestWatchDaemonShutsDownWhenTheWatchFails(t *testing.T) {
	_, s, down := watched(t, false)
	s.unwatch()
	shutsDown(t, down, "watch failed")
}

// A spare that could not watch its daemon is refused before it serves:
// serve fails, and so does start.
func TestWatchDaemonRefusesWhatIsNoPidfd(t *testing.T) {
	// Raw descriptors, in no poller yet: a pipe can be polled, but it is
	// no process.
	var pipe [2]int
	if err := unix.Pipe2(pipe[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pipe[0])
	defer unix.Close(pipe[1])
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	for name, fd := range map[string]int{"pipe": pipe[0], "file": int(devnull.Fd()), "closed": 1 << 20} {
		s := &spareService{shutdown: func() { t.Errorf("%s: shutdown called", name) }}
		if err := watchDaemon(s, fd, jsonlog.New(io.Discard, jsonlog.LevelInfo)); err == nil {
			t.Errorf("%s: watchDaemon accepted a descriptor that is no pidfd", name)
		}
	}
}
