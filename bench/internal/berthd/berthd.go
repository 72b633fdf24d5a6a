// Package berthd configures a berthd of a benchmark's own (its own root,
// state, socket, runtime and shim) and sweeps what its shims leave when a
// teardown through the daemon failed.
package berthd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/berthrt/berth/bench/internal/proc"
	"github.com/berthrt/berth/bench/internal/sweep"
	"github.com/berthrt/berth/shimapi"
)

// Config is what a benchmark sets in berthd's config file.
type Config struct {
	Root, State, Address string
	Runtime, Shim        string // binaries: runtime.default, runtime.shim
}

// Write writes c as berthd's config file at path.
func (c Config) Write(path string) error {
	text := fmt.Sprintf("version = 1\nroot = %q\nstate = %q\n\n[api]\naddress = %q\n\n[runtime]\ndefault = %q\nshim = %q\n",
		c.Root, c.State, c.Address, c.Runtime, c.Shim)
	return os.WriteFile(path, []byte(text), 0o644)
}

// ShimPids returns the berth-shims of namespace ns of the berthd whose
// state folder is state: those started for a task (`serve --namespace ns`)
// and spares bound to one, whose command line names the spare folder they
// were started in and whose working folder is now the task's bundle,
// state/ns/ID. With ns "" it returns every shim of that berthd, idle
// spares included.
func ShimPids(state, ns string) []int {
	var pids []int
	for _, pid := range proc.Matching("serve") {
		args := proc.Args(pid)
		if !slices.Contains(args, "--spare") {
			if i := slices.Index(args, "--bundle"); i >= 0 && i+1 < len(args) && under(args[i+1], filepath.Join(state, ns)) {
				pids = append(pids, pid)
			}
			continue
		}
		if cwd, ok := shimCwd(pid); ok && under(cwd, filepath.Join(state, ns)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// shimCwd returns the working folder of shim pid, where it serves. A
// shim whose folder was removed shows " (deleted)", left off here: it is
// still the daemon's if the folder was under its state folder.
func shimCwd(pid int) (string, bool) {
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return "", false
	}
	return strings.TrimSuffix(cwd, " (deleted)"), true
}

// under reports whether path is inside dir.
func under(path, dir string) bool { return strings.HasPrefix(path, dir+"/") }

// Sweep removes, once berthd (runtime, state) has stopped, the containers
// of namespace ns that runc still lists and the shims still running (spare
// shims included), each an error (package sweep).
func Sweep(runtime, state, ns string) error {
	// An idle spare exits by itself once its berthd is gone (it watches
	// the daemon's pidfd), which takes it a moment after the daemon's
	// exit, more for one that was still starting when the daemon
	// stopped: only one still there after spareExitWait is left behind.
	deadline := time.Now().Add(spareExitWait)
	for len(idleSpares(state)) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return errors.Join(sweep.Containers(runtime, filepath.Join(state, ".runc", ns)), sweep.Pids("berth-shim", ShimPids(state, "")))
}

// spareExitWait bounds Sweep's wait for idle spares to exit by themselves.
const spareExitWait = 2 * time.Second

// idleSpares returns the shims serving from state/.spare: idle spares.
func idleSpares(state string) []int {
	var pids []int
	for _, pid := range proc.Matching("serve", "--spare") {
		if cwd, ok := shimCwd(pid); ok && under(cwd, filepath.Join(state, ".spare")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Quiesce waits, at most limit, until what a berthd (its state folder
// state) still does in the background after a `run --rm` returned has
// ended: the shims of deleted tasks, which may still be deleting the
// runtime's container (task/release.go), have exited, and the pool holds
// spares serving (their pid files written) again. A benchmark calls it,
// untimed, after each berth run, so that this work does not land in the
// time of the path measured next. It reports whether the daemon is quiet.
func Quiesce(state string, spares int, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for {
		if quiet(state, spares) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
}

// quiet reports whether no shim serves from state/.deleted and at least
// spares idle spares serve from state/.spare.
func quiet(state string, spares int) bool {
	ready := 0
	for _, pid := range proc.Matching("serve") {
		cwd, ok := shimCwd(pid)
		if !ok {
			continue
		}
		switch {
		case under(cwd, filepath.Join(state, ".deleted")):
			return false
		case under(cwd, filepath.Join(state, ".spare")):
			if _, err := os.Stat(filepath.Join(cwd, shimapi.PidFileName)); err == nil {
				ready++
			}
		}
	}
	return ready >= spares
}
