package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	containerdcfg "github.com/berthrt/berth/bench/internal/containerd"
	"github.com/berthrt/berth/bench/internal/daemon"
	"github.com/berthrt/berth/bench/internal/proc"
	"github.com/berthrt/berth/bench/internal/stats"
)

// containerd is Debian's containerd on its own root, state and socket,
// driven with ctr, for comparison.
type containerd struct {
	d       *daemon.Process
	setup   *containerdcfg.Setup
	ctrBin  string
	runtime string // runc, for the sweep
	address string
	ns      string
	rootfs  string
	fifoDir string
	version string
	everRan bool
}

// newContainerd writes a config from `containerd config default` with the
// workspace's root, state and socket; it starts nothing.
func newContainerd(w *workspace, cfg config) (*containerd, error) {
	bin, err := exec.LookPath(cfg.containerd)
	if err != nil {
		return nil, err
	}
	ctr, err := exec.LookPath(cfg.ctr)
	if err != nil {
		return nil, err
	}
	c := &containerd{
		ctrBin:  ctr,
		runtime: cfg.runtime,
		address: filepath.Join(w.run, "c", "c.sock"),
		ns:      w.ns,
		rootfs:  w.rootfs,
		fifoDir: filepath.Join(w.run, "cfifo"),
	}
	if c.setup, err = containerdcfg.Configure(bin, filepath.Join(w.dir, "containerd.toml"), filepath.Join(w.dir, "containerd"), filepath.Join(w.run, "c"), c.address); err != nil {
		return nil, err
	}
	c.version = c.setup.Version
	c.d = daemon.New("containerd", filepath.Join(w.dir, "containerd.log"), c.setup.Args...)
	return c, nil
}

// start starts containerd and times it until it serves: answered is when
// its socket accepts a connection, serving when `ctr version` succeeds.
// containerd listens only once every plugin is loaded and the tasks of a
// previous run are reloaded, so the two are close; ctr's own start-up
// (see ctrVersion) is part of the second.
func (c *containerd) start(ctx context.Context) (readyTimes, error) {
	started := time.Now()
	if err := c.d.Start(); err != nil {
		return readyTimes{}, err
	}
	c.everRan = true
	var rt readyTimes
	deadline := started.Add(daemon.ReadyTimeout)
	for {
		switch {
		case ctx.Err() != nil:
			return rt, ctx.Err()
		case c.d.Exited():
			return rt, c.d.Failure("exited before it served")
		case time.Now().After(deadline):
			return rt, c.d.Failure(fmt.Sprintf("did not serve within %v", daemon.ReadyTimeout))
		}
		if rt.answered == 0 {
			conn, err := net.Dial("unix", c.address)
			if err != nil {
				time.Sleep(pollInterval)
				continue
			}
			conn.Close()
			rt.answered = time.Since(started)
		}
		if _, err := c.ctr("--connect-timeout", "1s", "version"); err == nil {
			rt.serving = time.Since(started)
			return rt, nil
		}
		time.Sleep(pollInterval)
	}
}

// restart kills containerd with SIGKILL, starts it again and times it.
func (c *containerd) restart(ctx context.Context) (readyTimes, error) {
	c.d.Kill()
	return c.start(ctx)
}

// ctrVersion times `ctr version` against the serving daemon, n times: what
// ctr itself adds to the serving time of start.
func (c *containerd) ctrVersion(n int) (stats.Samples, error) {
	var s stats.Samples
	for range n {
		start := time.Now()
		if _, err := c.ctr("version"); err != nil {
			return nil, err
		}
		s = append(s, time.Since(start))
	}
	return s, nil
}

// ctr runs ctr with the daemon's address and the run's namespace (global
// flags come first) and returns its output.
func (c *containerd) ctr(args ...string) (string, error) {
	all := append([]string{"--address", c.address, "--namespace", c.ns}, args...)
	var out bytes.Buffer
	cmd, cancel := proc.Command(c.ctrBin, all...)
	defer cancel()
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// runOnce times `ctr run --rm --rootfs DIR ID /bin/true`.
func (c *containerd) runOnce(id string) (time.Duration, error) {
	start := time.Now()
	if _, err := c.ctr("run", "--rm", "--fifo-dir", c.fifoDir, "--rootfs", c.rootfs, id, "/bin/true"); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// runDetached starts a `sleep 3600` container for every id with `ctr run
// -d --null-io` (berthctl run -d discards the output too).
func (c *containerd) runDetached(ctx context.Context, ids []string) error {
	return parallel(ctx, ids, func(id string) error {
		_, err := c.ctr("run", "-d", "--null-io", "--fifo-dir", c.fifoDir, "--rootfs", c.rootfs, id, "/bin/sleep", "3600")
		return err
	})
}

// shimPids returns the pids of the run's containerd-shim-runc-v2.
func (c *containerd) shimPids() []int { return proc.Matching(containerdcfg.ShimWords(c.ns)...) }

// teardown kills and removes every task and container of the run's
// namespace with ctr.
func (c *containerd) teardown(ctx context.Context) error {
	out, err := c.ctr("tasks", "ls", "--quiet")
	if err != nil {
		return err
	}
	// delete --force kills a running task with SIGKILL and waits for it.
	if err := parallel(ctx, strings.Fields(out), func(id string) error {
		_, err := c.ctr("tasks", "rm", "--force", id)
		return err
	}); err != nil {
		return err
	}
	if out, err = c.ctr("containers", "ls", "--quiet"); err != nil {
		return err
	}
	if ids := strings.Fields(out); len(ids) > 0 {
		_, err = c.ctr(append([]string{"containers", "rm"}, ids...)...)
	}
	return err
}

// Close removes every container of the run through containerd (started
// again if it was killed), stops it, sweeps what is left (an error), and
// removes what it made under /run/containerd.
func (c *containerd) Close() error {
	if c == nil || !c.everRan {
		return nil
	}
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if c.d.Exited() {
		if _, err := c.start(ctx); err != nil {
			errs = append(errs, fmt.Errorf("start containerd for cleanup: %w", err))
		}
	}
	if !c.d.Exited() {
		if err := c.teardown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("containerd teardown: %w", err))
		}
	}
	errs = append(errs, c.d.Stop(), c.setup.Sweep(c.runtime, c.ns))
	c.everRan = false // closed: a second Close has nothing to do
	return errors.Join(errs...)
}

// abandon stops a containerd that failed to start and removes what it may
// have made; the benchmark goes on without it.
func (c *containerd) abandon() {
	c.d.Kill()
	c.setup.Sweep(c.runtime, c.ns)
	c.everRan = false
}
