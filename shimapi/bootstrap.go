package shimapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/atomicfile"
	"github.com/berthrt/berth/internal/proc"
	"github.com/berthrt/berth/internal/unixsock"
)

// Version is the shim API version this package implements.
const Version = "v1"

// Files in the bundle folder, owned by the shim.
const (
	SocketName   = "shim.sock"
	PidFileName  = "shim.pid"
	LogFileName  = "shim.log"
	ExitFileName = "exit.json"
	// RuntimeLogName is the runtime's log (runc --log, JSON lines).
	RuntimeLogName = "runtime.log"
	// DeletedName marks a bundle that `berth-shim delete` cleaned up: a
	// later `start` for it fails instead of starting a shim for a bundle
	// that is going away.
	DeletedName = "shim-deleted"
)

// SocketPath returns the shim socket's path for a bundle.
func SocketPath(bundle string) string { return filepath.Join(bundle, SocketName) }

// ExitStatus is the persisted exit of a container's init process.
type ExitStatus struct {
	Pid      uint32    `json:"pid"`
	Status   uint32    `json:"exit_status"`
	ExitedAt time.Time `json:"exited_at"`
}

// WriteExitFile persists st in the bundle atomically: a reader sees the
// whole file or none.
func WriteExitFile(bundle string, st ExitStatus) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return atomicfile.WriteVolatile(filepath.Join(bundle, ExitFileName), data, 0o600)
}

// ReadExitFile returns the persisted exit status of a bundle, or an error
// wrapping fs.ErrNotExist when none was written.
func ReadExitFile(bundle string) (ExitStatus, error) {
	var st ExitStatus
	data, err := os.ReadFile(filepath.Join(bundle, ExitFileName))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("exit file %s: %w", filepath.Join(bundle, ExitFileName), err)
	}
	return st, nil
}

// ReadPidFile returns the pid recorded in a bundle's shim.pid.
func ReadPidFile(bundle string) (int, error) {
	data, err := os.ReadFile(filepath.Join(bundle, PidFileName))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(string(data))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: bad content %q", filepath.Join(bundle, PidFileName), data)
	}
	return pid, nil
}

// ServeArgs returns the command line of pid when it is alive and a
// serving berth-shim (`berth-shim serve …`, as `berth-shim start` execs
// it); nil otherwise.
func ServeArgs(pid int) []string {
	if !proc.Alive(pid) {
		return nil
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil
	}
	args := strings.Split(string(bytes.TrimRight(cmdline, "\x00")), "\x00")
	if len(args) < 2 || args[1] != "serve" {
		return nil
	}
	return args
}

// ServesBundle reports whether pid is alive and is the serving berth-shim
// of bundle (pids are reused; a pid file may be stale): named by --bundle,
// or a spare started in another folder that was renamed to the bundle,
// whose working folder names the bundle now.
func ServesBundle(pid int, bundle string) bool {
	args := ServeArgs(pid)
	if args == nil {
		return false
	}
	for i, a := range args {
		if a == "--bundle" && i+1 < len(args) && args[i+1] == bundle {
			return true
		}
	}
	if slices.Contains(args, "--spare") {
		cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
		return err == nil && cwd == bundle
	}
	return false
}

// Connect dials the shim of a bundle and returns a ttrpc client for it,
// whose errors carry berth's error classes. The caller closes the returned
// *ttrpc.Client.
func Connect(ctx context.Context, bundle string, opts ...ttrpc.ClientOpts) (*ttrpc.Client, TaskClient, error) {
	conn, err := unixsock.Dial(ctx, SocketPath(bundle))
	if err != nil {
		return nil, nil, err
	}
	opts = append([]ttrpc.ClientOpts{ttrpc.WithUnaryClientInterceptor(errdefs.ClientErrors)}, opts...)
	c := ttrpc.NewClient(conn, opts...)
	return c, NewTaskClient(c), nil
}

// ShutdownNow tells the shim serving from bundle to shut down now
// (ShutdownRequest.now), over a connection of its own that it closes then,
// bounded by ctx: what a daemon does to the shim of a deleted task that it
// holds no connection to.
func ShutdownNow(ctx context.Context, bundle string) error {
	c, task, err := Connect(ctx, bundle)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = task.Shutdown(ctx, &ShutdownRequest{Now: true})
	return err
}
