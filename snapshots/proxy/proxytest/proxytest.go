// Package proxytest runs the external snapshotter program that the
// repository ships (cmd/native-snapshotter) for tests: built once per test
// process, started on a socket of its own, stopped at cleanup.
package proxytest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/internal/unixsock"
	"github.com/berthrt/berth/snapshots"
	"github.com/berthrt/berth/snapshots/proxy"
)

// startTimeout bounds how long a started program may take to listen.
const startTimeout = 10 * time.Second

var (
	buildOnce sync.Once
	binary    string // the built program, in buildDir
	buildDir  string
	buildErr  error
)

// Binary returns the path of native-snapshotter built from this tree once
// per test process, in a folder that Cleanup removes.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "berth-native-snapshotter-")
		if err != nil {
			buildErr = err
			return
		}
		buildDir = dir
		binary = filepath.Join(dir, "native-snapshotter")
		cmd := exec.Command("go", "build", "-o", binary, "./cmd/native-snapshotter")
		cmd.Dir = testutil.RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/native-snapshotter: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

// Cleanup removes what Binary built; call it from TestMain after m.Run.
func Cleanup() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// Program is one running native-snapshotter.
type Program struct {
	// Address is the program's socket.
	Address string
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd has been waited for
	log     *os.File
}

// Start runs the program with its snapshots in root and waits until it
// listens; Stop (or the test's cleanup) stops it and removes its socket
// folder.
func Start(t testing.TB, root string) *Program {
	t.Helper()
	bin := Binary(t)
	// A unix socket's path is limited to 108 bytes: keep it short.
	dir, err := os.MkdirTemp("", "bns-")
	if err != nil {
		t.Fatal(err)
	}
	p := &Program{Address: filepath.Join(dir, "s.sock"), done: make(chan struct{})}
	if p.log, err = os.Create(filepath.Join(dir, "log")); err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, "--address", p.Address, "--root", root)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Stop()
		os.RemoveAll(dir)
	})
	deadline := time.Now().Add(startTimeout)
	for {
		conn, err := unixsock.Dial(context.Background(), p.Address)
		if err == nil {
			conn.Close()
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("native-snapshotter exited: %s\n%s", p.cmd.ProcessState, p.Logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("native-snapshotter did not listen on %s: %v\n%s", p.Address, err, p.Logs())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Logs returns what the program wrote.
func (p *Program) Logs() string {
	data, _ := os.ReadFile(p.log.Name())
	return string(data)
}

// Stop sends SIGTERM and waits for the program to exit, killing it after
// startTimeout; it reports how it exited (nil for exit status 0).
func (p *Program) Stop() error {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(startTimeout):
		p.cmd.Process.Kill()
		<-p.done
	}
	p.log.Close()
	if !p.cmd.ProcessState.Success() {
		return fmt.Errorf("native-snapshotter: %s", p.cmd.ProcessState)
	}
	return nil
}

// Connect returns the program's snapshotter through proxy.New; Close
// closes the connection only.
func (p *Program) Connect(t testing.TB) snapshots.Snapshotter {
	t.Helper()
	conn, err := unixsock.Dial(context.Background(), p.Address)
	if err != nil {
		t.Fatal(err)
	}
	return proxy.New(ttrpc.NewClient(conn), "native")
}

// Open is a snapshotstest.NewFunc: it starts a program on root and returns its
// snapshotter, whose Close also stops the program (so that the suite's
// reopening starts another on the same root).
func Open(t testing.TB) func(root string) (snapshots.Snapshotter, error) {
	return func(root string) (snapshots.Snapshotter, error) {
		p := Start(t, root)
		return stopping{p.Connect(t), p}, nil
	}
}

type stopping struct {
	snapshots.Snapshotter
	p *Program
}

func (s stopping) Close() error {
	return errors.Join(s.Snapshotter.Close(), s.p.Stop())
}
