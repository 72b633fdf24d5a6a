// Package floor runs a container through runc directly, the least any
// container runtime must do to run one: `runc create` (stdio on
// /dev/null), `runc start`, wait for the init process to exit, `runc
// delete`. Benchmarks divide their own figures by this one, measured in
// the same run, so that the machine's speed cancels out.
//
// The process calling Once must be a child subreaper (proc.SetSubreaper)
// for the duration of the call: runc create detaches, and its init process
// is reparented to the caller when runc exits, so the wait is a wait4 on
// that pid, as in a shim's reaper, not a poll.
package floor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/berthrt/berth/bench/internal/proc"
	"github.com/berthrt/berth/oci"
)

// Runner runs floor containers, each in a fresh bundle under Dir with a
// config.json from oci.GenerateSpec (what berth's client writes for a
// container with a plain rootfs folder). It is owned by one goroutine.
type Runner struct {
	Runtime   string // absolute path of runc
	Root      string // runc's --root
	Dir       string // bundles are made here, one folder per container
	Rootfs    string // plain folder, the root of every container
	Namespace string // cgroups are /berth/<Namespace>/<id>

	seq  int            // makes ids unique
	live map[string]int // containers not yet deleted: id to init pid (0 until known or once collected)
}

// Once runs /bin/true in a new container and returns the time from create
// to the end of delete; writing the bundle is not timed.
func (r *Runner) Once(ctx context.Context) (time.Duration, error) {
	if r.live == nil {
		r.live = map[string]int{}
	}
	r.seq++
	id := fmt.Sprintf("floor-%d", r.seq)
	bundle, err := r.WriteBundle(ctx, id, "/bin/true")
	if err != nil {
		return 0, err
	}
	pidFile := filepath.Join(bundle, "init.pid")

	start := time.Now()
	r.live[id] = 0 // from here Close deletes it, even if create fails halfway
	cmd, cancel := proc.Command(r.Runtime, "--root", r.Root, "create", "--bundle", bundle, "--pid-file", pidFile, id)
	// Stdin, Stdout and Stderr stay nil (/dev/null): runc create hands its
	// stdio to the container, and a pipe would keep Wait waiting for it.
	err = cmd.Run()
	cancel()
	if err != nil {
		return 0, fmt.Errorf("runc create %s: %w", id, err)
	}
	pid, err := proc.ReadPid(pidFile)
	if err != nil {
		return 0, err
	}
	r.live[id] = pid
	if err := proc.Run(r.Runtime, "--root", r.Root, "start", id); err != nil {
		return 0, err
	}
	code, err := proc.WaitExit(pid)
	if err != nil {
		return 0, err
	}
	r.live[id] = 0 // collected: Close must not wait for it again
	if err := proc.Run(r.Runtime, "--root", r.Root, "delete", id); err != nil {
		return 0, err
	}
	elapsed := time.Since(start)
	delete(r.live, id)

	if code != 0 {
		return 0, fmt.Errorf("container %s: /bin/true exited with %d", id, code)
	}
	return elapsed, os.RemoveAll(bundle)
}

// WriteBundle makes the bundle folder of id under Dir with a config.json
// that runs args on Rootfs. Once uses it for the floor; a benchmark
// compares another path with the floor on bundles it writes here too, so
// that both run the same config.json. Close removes only the floor's.
func (r *Runner) WriteBundle(ctx context.Context, id string, args ...string) (string, error) {
	bundle := filepath.Join(r.Dir, id)
	if err := os.MkdirAll(bundle, 0o711); err != nil {
		return "", err
	}
	spec, err := oci.GenerateSpec(ctx, r.Namespace, id, oci.WithProcessArgs(args...), oci.WithRootFSPath(r.Rootfs))
	if err != nil {
		return "", err
	}
	data, err := json.Marshal(spec)
	if err != nil {
		return "", err
	}
	return bundle, os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644)
}

// Close force-deletes every container left by an interrupted Once, also
// those runc knows of that Once never learned, and removes the bundles.
// It leaves Dir itself and the cgroups' namespace level to the caller.
func (r *Runner) Close() error {
	var errs []error
	for id, pid := range r.live {
		errs = append(errs, proc.Run(r.Runtime, "--root", r.Root, "delete", "--force", id))
		if pid > 0 {
			errs = append(errs, proc.Reap(pid))
		}
		delete(r.live, id)
	}
	errs = append(errs, r.sweep())
	for i := 1; i <= r.seq; i++ {
		errs = append(errs, os.RemoveAll(filepath.Join(r.Dir, fmt.Sprintf("floor-%d", i))))
	}
	return errors.Join(errs...)
}

// sweep force-deletes any container still known to runc under Root.
func (r *Runner) sweep() error {
	if _, err := os.Stat(r.Root); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	// Standard output only: a warning of runc on stderr is no container id.
	cmd, cancel := proc.Command(r.Runtime, "--root", r.Root, "list", "--quiet")
	defer cancel()
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("runc list: %w", err)
	}
	var errs []error
	for _, id := range strings.Fields(string(out)) {
		errs = append(errs, proc.Run(r.Runtime, "--root", r.Root, "delete", "--force", id))
	}
	return errors.Join(errs...)
}
