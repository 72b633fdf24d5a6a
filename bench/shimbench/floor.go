package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// floorOnce runs one container through runc directly, the least any shim
// must do: `runc create` (stdio on /dev/null), `runc start`, wait for the
// init process to exit, `runc delete`. It returns the time from create to
// the end of delete; writing the bundle is not timed.
//
// runc create detaches: its init process is reparented to this process
// (a child subreaper) when runc exits, so the wait is a wait4 on that pid,
// as a shim's reaper does, rather than a poll of `runc state`.
func (w *workspace) floorOnce(ctx context.Context) (time.Duration, error) {
	id := w.newID("floor")
	bundle, err := w.writeBundle(ctx, id, "/bin/true")
	if err != nil {
		return 0, err
	}
	pidFile := filepath.Join(bundle, "init.pid")

	start := time.Now()
	w.floors[id] = 0 // from here Close deletes it, even if create fails halfway
	cmd, cancel := command(w.runtime, "--root", w.runcRoot, "create", "--bundle", bundle, "--pid-file", pidFile, id)
	// Stdin, Stdout and Stderr stay nil (/dev/null): runc create hands its
	// stdio to the container, and a pipe would keep Wait waiting for it.
	err = cmd.Run()
	cancel()
	if err != nil {
		return 0, fmt.Errorf("runc create %s: %w", id, err)
	}
	pid, err := readPid(pidFile)
	if err != nil {
		return 0, err
	}
	w.floors[id] = pid
	if err := run(w.runtime, "--root", w.runcRoot, "start", id); err != nil {
		return 0, err
	}
	code, err := waitExit(pid)
	if err != nil {
		return 0, err
	}
	w.floors[id] = 0 // collected: Close must not wait for it again
	if err := run(w.runtime, "--root", w.runcRoot, "delete", id); err != nil {
		return 0, err
	}
	elapsed := time.Since(start)
	delete(w.floors, id)

	if code != 0 {
		return 0, fmt.Errorf("container %s: /bin/true exited with %d", id, code)
	}
	return elapsed, os.RemoveAll(bundle)
}
