package shimlaunch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/internal/proc"
	"github.com/berthrt/berth/shimapi"
)

// modeEnv makes the test binary, started by Start in place of berth-shim,
// play a shim: "serve" checks what it inherited and reports ready, then
// waits to be killed; "exit" exits at once; "hang" never reports ready.
const modeEnv = "SHIMLAUNCH_TEST_MODE"

func TestMain(m *testing.M) {
	switch os.Getenv(modeEnv) {
	case "":
		os.Exit(m.Run())
	case "serve":
		if err := playServe(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		time.Sleep(time.Hour) // not select {}: that is a deadlock, which exits
	case "exit":
		os.Exit(3)
	case "hang":
		time.Sleep(time.Hour)
	}
}

// playServe checks what a serving shim is handed: its session, working
// folder, the listening socket and the readiness pipe; then reports ready.
func playServe() error {
	if sid, _ := unix.Getsid(0); sid != os.Getpid() {
		return fmt.Errorf("session %d, want one of its own", sid)
	}
	if v, err := unix.GetsockoptInt(ListenerFD, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || v != 1 {
		return fmt.Errorf("fd %d is no listening socket: %d, %v", ListenerFD, v, err)
	}
	if os.Args[1] != "serve" || os.Getenv("GOMAXPROCS") == "" {
		return fmt.Errorf("args %q, GOMAXPROCS %q", os.Args, os.Getenv("GOMAXPROCS"))
	}
	_, err := fmt.Fprintln(os.NewFile(ReadyFD, "ready"), ReadyMessage)
	return err
}

func isChild(pid int) bool { return slices.Contains(proc.Children(os.Getpid()), pid) }

func config(t *testing.T, mode string) Config {
	t.Setenv(modeEnv, mode)
	return Config{Binary: os.Args[0], Folder: t.TempDir(), Timeout: 200 * time.Millisecond}
}

// TestStartServesAndReaps: the shim gets its session, socket and pipe, is
// our child, and Reap reaps it once it exits.
func TestStartServesAndReaps(t *testing.T) {
	cfg := config(t, "serve")
	cfg.Timeout = time.Minute
	p, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", p.Pid())); err != nil || cwd != cfg.Folder {
		t.Errorf("working folder %q (%v), want %q", cwd, err, cfg.Folder)
	}
	if fi, err := os.Stat(shimapi.SocketPath(cfg.Folder)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket: %v, %v: want mode 0600", fi, err)
	}
	if !isChild(p.Pid()) || !proc.Alive(p.Pid()) {
		t.Fatalf("shim %d is no live child of ours", p.Pid())
	}
	p.Reap()
	unix.Kill(p.Pid(), unix.SIGKILL)
	waitGone(t, p.Pid())
}

// TestStartFailureLeavesNothing: a shim that exits before it serves, and
// one that does not serve in time, fail the start and leave no socket and
// no zombie.
func TestStartFailureLeavesNothing(t *testing.T) {
	for _, mode := range []string{"exit", "hang"} {
		t.Run(mode, func(t *testing.T) {
			cfg := config(t, mode)
			os.WriteFile(filepath.Join(cfg.Folder, shimapi.LogFileName), []byte("the last words"), 0o600)
			before := proc.Children(os.Getpid())
			_, err := Start(context.Background(), cfg)
			if err == nil || !strings.Contains(err.Error(), "the last words") {
				t.Fatalf("start: %v, want a failure with the log's tail", err)
			}
			if _, err := os.Stat(shimapi.SocketPath(cfg.Folder)); !os.IsNotExist(err) {
				t.Errorf("socket after a failed start: %v", err)
			}
			for _, pid := range proc.Children(os.Getpid()) {
				if !slices.Contains(before, pid) {
					t.Errorf("child %d left by a failed start", pid)
				}
			}
		})
	}
}

// waitGone waits until pid is no child of ours any more: reaped.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); isChild(pid); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("shim %d not reaped 10 s after it was killed", pid)
		}
	}
}
