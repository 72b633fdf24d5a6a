package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/berthrt/berth/bench/internal/berthd"
	"github.com/berthrt/berth/bench/internal/containerd"
	"github.com/berthrt/berth/bench/internal/daemon"
	"github.com/berthrt/berth/bench/internal/proc"
)

// cli runs a daemon's command-line client with its global flags first.
type cli struct {
	bin    string
	global []string
}

// run runs the client with args and returns its output; a failure quotes
// it.
func (c cli) run(args ...string) (string, error) {
	var out bytes.Buffer
	cmd, cancel := proc.Command(c.bin, append(append([]string(nil), c.global...), args...)...)
	defer cancel()
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", filepath.Base(c.bin), strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// contender is a daemon and its client, driven through the commands a
// user types.
type contender struct {
	name    string
	runName string // the run --rm command, for the table
	cli
	p       *daemon.Process
	runtime string
	// pull, clear and runRm are the command lines of a pull, of removing
	// the image with everything it holds, and of a container run with
	// --rm; empty means none.
	pull, clear func(ref string) []string
	runRm       func(ref, id string) []string
	// left lists what the daemon still holds after clear: content and
	// snapshots (non-empty means the next pull would not start fresh).
	left func() (string, error)
	// quiesce, when set, waits (untimed) for what the daemon still does
	// in the background after a run --rm returned.
	quiesce func()
	// stop stops the daemon and sweeps what it left.
	stop func() error
}

// quiesceLimit bounds the wait for a berthd's background work after a
// run --rm (berthd.Quiesce).
const quiesceLimit = 5 * time.Second

// startBerth starts the berthd binary bin, called name, with its root
// under dir and its state under run (short: it holds unix sockets), in
// namespace ns; short names its folders apart from another berthd's.
func startBerth(ctx context.Context, cfg config, name, bin, short, dir, run, ns string) (*contender, error) {
	state := filepath.Join(run, short)
	address := filepath.Join(state, "berth.sock")
	conf := filepath.Join(dir, short+"-berthd.toml")
	if err := (berthd.Config{Root: filepath.Join(dir, short+"-berth"), State: state, Address: address, Runtime: cfg.runtime, Shim: cfg.shim}).Write(conf); err != nil {
		return nil, err
	}
	p, err := daemon.Start(name, filepath.Join(dir, short+"-berthd.log"), bin, "--config", conf)
	if err != nil {
		return nil, err
	}
	c := &contender{name: name, runName: "berthctl run --rm IMAGE", cli: cli{bin: cfg.berthctl, global: []string{"--address", address, "--namespace", ns}}, p: p, runtime: cfg.runtime}
	c.pull = func(ref string) []string { return []string{"images", "pull", "--plain-http", ref} }
	c.clear = func(ref string) []string { return []string{"images", "rm", "--sync", ref} }
	c.runRm = func(ref, id string) []string { return []string{"run", "--rm", ref, id, "/bin/true"} }
	c.left = func() (string, error) {
		blobs, err := c.run("content", "ls", "-q")
		if err != nil {
			return "", err
		}
		snaps, err := c.run("snapshots", "ls", "-q")
		return strings.TrimSpace(blobs + snaps), err
	}
	c.stop = func() error { return errors.Join(p.Stop(), berthd.Sweep(cfg.runtime, state, ns)) }
	c.quiesce = func() {
		if !berthd.Quiesce(state, 1, quiesceLimit) {
			fmt.Fprintf(os.Stderr, "unpackbench: %s still busy %v after a run --rm\n", name, quiesceLimit)
		}
	}
	if err := p.WaitReady(ctx, func() error { _, err := c.run("images", "ls", "-q"); return err }); err != nil {
		return nil, errors.Join(err, c.stop())
	}
	return c, nil
}

// fetchOnly is c pulling without unpacking (--no-unpack): what the fetch
// alone costs, the floor of a pull with unpack. It shares c's daemon
// (stop is c's).
func fetchOnly(c *contender) *contender {
	f := *c
	f.name = c.name + " --no-unpack"
	f.pull = func(ref string) []string { return []string{"images", "pull", "--plain-http", "--no-unpack", ref} }
	f.stop = func() error { return nil }
	return &f
}

// startContainerd starts Debian's containerd with its own root (under
// dir), state and socket (under run), from `containerd config default`
// (bench/internal/containerd), in namespace ns; its default snapshotter
// is overlayfs.
func startContainerd(ctx context.Context, cfg config, dir, run, ns string) (*contender, string, error) {
	bin, err := exec.LookPath(cfg.containerd)
	if err != nil {
		return nil, "", err
	}
	state := filepath.Join(run, "c")
	address := filepath.Join(state, "c.sock")
	setup, err := containerd.Configure(bin, filepath.Join(dir, "containerd.toml"), filepath.Join(dir, "containerd"), state, address)
	if err != nil {
		return nil, "", err
	}
	p, err := daemon.Start("containerd", filepath.Join(dir, "containerd.log"), setup.Args...)
	if err != nil {
		return nil, "", err
	}
	fifos := filepath.Join(run, "cfifo")
	c := &contender{name: "containerd", runName: "ctr run --rm IMAGE", cli: cli{bin: cfg.ctr, global: []string{"--address", address, "--namespace", ns}}, p: p, runtime: cfg.runtime}
	c.pull = func(ref string) []string { return []string{"images", "pull", "--plain-http", ref} }
	c.clear = func(ref string) []string { return []string{"images", "rm", "--sync", ref} }
	c.runRm = func(ref, id string) []string {
		return []string{"run", "--rm", "--fifo-dir", fifos, ref, id, "/bin/true"}
	}
	c.left = func() (string, error) {
		blobs, err := c.run("content", "ls", "-q")
		if err != nil {
			return "", err
		}
		snaps, err := c.run("snapshots", "ls")
		lines := strings.Split(strings.TrimSpace(snaps), "\n")
		return strings.TrimSpace(blobs + strings.Join(lines[1:], "\n")), err // the first line is the header
	}
	c.stop = func() error { return errors.Join(p.Stop(), setup.Sweep(cfg.runtime, ns)) }
	if err := p.WaitReady(ctx, func() error { _, err := c.run("version"); return err }); err != nil {
		return nil, "", errors.Join(err, c.stop())
	}
	return c, setup.Version, nil
}
