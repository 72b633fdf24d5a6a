package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/berthrt/berth/bench/internal/berthd"
	"github.com/berthrt/berth/bench/internal/floor"
	"github.com/berthrt/berth/bench/internal/proc"
	"github.com/berthrt/berth/bench/internal/stats"
)

// ctrVersionRuns is how often `ctr version` is timed on a serving
// containerd, as the reference for its restart figure.
const ctrVersionRuns = 5

// results are the figures of one benchmark run.
type results struct {
	containerdVersion string
	containerdMissing string // why containerd was not measured; "" when it was

	// run --rm /bin/true, one sample per path and round
	floor, cli, library, ctrRun stats.Samples
	refCLI                      stats.Samples // berthctl run --rm of the reference build, with -ref

	// berthCPU and refCPU are the CPU time berthd itself used per run in
	// the rounds, warm-up included (its children's not counted): berthd
	// serves two runs a round (berthctl, client library), the reference
	// one.
	berthCPU, refCPU time.Duration

	berthIdle, berthIdleAfter, berthLoaded proc.Memory
	cdIdle, cdLoaded                       proc.Memory
	berthShims, cdShims                    shimMemory // with cfg.small containers

	restartSmall, restartLarge, cdRestart []readyTimes
	ctrVersion                            stats.Samples
	verifiedSmall, verifiedLarge          int // containers RUNNING after the last restart
	cdVerified                            int

	traceWindows []window // measured berthctl runs, with -trace
}

// shimMemory sums the memory of the shims of the running containers.
type shimMemory struct {
	n              int
	pssKB, rssKB   int
	anonKB, fileKB int // PSS split, summed
}

// benchmark runs every measurement in one workspace, with one berthd and
// one containerd, and always cleans up: containers, daemons, folders,
// cgroups.
func benchmark(ctx context.Context, cfg config) (res results, retErr error) {
	w, err := newWorkspace(cfg.rootfsScript)
	if err != nil {
		return res, err
	}
	// Deferred in this order, they run in reverse: containers and daemons
	// first, then the floor's leftovers, then folders and cgroups.
	closeLater := func(what string, close func() error) {
		if err := close(); err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("cleanup of %s: %w", what, err))
		}
	}
	defer closeLater("workspace", w.Close)
	fl := &floor.Runner{Runtime: cfg.runtime, Root: filepath.Join(w.run, "floor-runc"), Dir: filepath.Join(w.run, "floor"), Rootfs: w.rootfs, Namespace: w.ns}
	defer closeLater("runc floor", fl.Close)
	b, err := newBerth(w, "b", cfg, false)
	if err != nil {
		return res, err
	}
	defer closeLater("berthd", b.Close)
	var ref *berth
	if cfg.refBins != nil {
		bins := *cfg.refBins
		bins.runtime = cfg.runtime
		if ref, err = newBerth(w, "r", bins, true); err != nil {
			return res, err
		}
		defer closeLater("reference berthd", ref.Close)
		progress("starting the reference berthd (%s)", cfg.ref)
		if _, err := ref.start(ctx); err != nil {
			return res, err
		}
	}
	var cd *containerd
	if cfg.containerd == "" {
		res.containerdMissing = "skipped (-containerd \"\")"
	} else if cd, err = newContainerd(w, cfg); err != nil {
		res.containerdMissing = err.Error()
	}
	defer closeLater("containerd", func() error { return cd.Close() })

	progress("starting berthd (state %s, namespace %s)", b.state, w.ns)
	if _, err := b.start(ctx); err != nil {
		return res, err
	}
	if cd != nil {
		progress("starting containerd (%s)", orMissing(cd.version))
		if _, err := cd.start(ctx); err != nil {
			res.containerdMissing = fmt.Sprintf("does not start here: %v", err)
			cd.abandon()
			cd = nil
		} else {
			res.containerdVersion = cd.version
		}
	}
	if res.containerdMissing != "" {
		progress("!!! CONTAINERD IS NOT MEASURED: %s", res.containerdMissing)
	}

	// Idle memory of freshly started daemons.
	if err := settle(ctx, cfg); err != nil {
		return res, err
	}
	if res.berthIdle, err = proc.ReadMemory(b.d.Pid()); err != nil {
		return res, err
	}
	if cd != nil {
		if res.cdIdle, err = proc.ReadMemory(cd.d.Pid()); err != nil {
			return res, err
		}
	}

	if err := runRounds(ctx, cfg, w, fl, b, ref, cd, &res); err != nil {
		return res, err
	}
	if err := settle(ctx, cfg); err != nil {
		return res, err
	}
	if res.berthIdleAfter, err = proc.ReadMemory(b.d.Pid()); err != nil {
		return res, err
	}

	// cfg.small running containers in each daemon: memory, then restarts.
	small := w.ids("idle", cfg.small)
	progress("starting %d containers with berthctl run -d", len(small))
	if err := b.runDetached(ctx, small); err != nil {
		return res, err
	}
	if cd != nil {
		progress("starting %d containers with ctr run -d", len(small))
		if err := cd.runDetached(ctx, small); err != nil {
			return res, fmt.Errorf("containerd: %w", err)
		}
	}
	if err := settle(ctx, cfg); err != nil {
		return res, err
	}
	if res.berthLoaded, err = proc.ReadMemory(b.d.Pid()); err != nil {
		return res, err
	}
	if res.berthShims, err = sumMemory(b.shimPids()); err != nil {
		return res, err
	}
	if cd != nil {
		if res.cdLoaded, err = proc.ReadMemory(cd.d.Pid()); err != nil {
			return res, err
		}
		if res.cdShims, err = sumMemory(cd.shimPids()); err != nil {
			return res, err
		}
	}
	for i := range cfg.restarts {
		progress("restart %d/%d with %d containers", i+1, cfg.restarts, len(small))
		// Alternate which daemon goes first, as the latency rounds do.
		for _, berthTurn := range []bool{i%2 == 0, i%2 != 0} {
			if berthTurn {
				rt, err := b.restart(ctx)
				if err != nil {
					return res, err
				}
				res.restartSmall = append(res.restartSmall, rt)
				if res.verifiedSmall, err = checkRunning("berthd", b.ctl, small); err != nil {
					return res, err
				}
			} else if cd != nil {
				rt, err := cd.restart(ctx)
				if err != nil {
					return res, fmt.Errorf("containerd: %w", err)
				}
				res.cdRestart = append(res.cdRestart, rt)
				if res.cdVerified, err = checkRunning("containerd", cd.ctr, small); err != nil {
					return res, err
				}
			}
		}
	}
	if cd != nil {
		if res.ctrVersion, err = cd.ctrVersion(ctrVersionRuns); err != nil {
			return res, fmt.Errorf("containerd: %w", err)
		}
		// containerd is done: free its containers before berthd gets many.
		progress("removing containerd's containers and stopping it")
		if err := cd.Close(); err != nil {
			return res, fmt.Errorf("containerd: %w", err)
		}
	}

	if cfg.large > cfg.small {
		more := w.ids("idle", cfg.large-cfg.small)
		progress("starting %d more containers with berthctl run -d", len(more))
		if err := b.runDetached(ctx, more); err != nil {
			return res, err
		}
		all := append(small, more...)
		for i := range cfg.restarts {
			progress("restart %d/%d with %d containers", i+1, cfg.restarts, len(all))
			rt, err := b.restart(ctx)
			if err != nil {
				return res, err
			}
			res.restartLarge = append(res.restartLarge, rt)
			if res.verifiedLarge, err = checkRunning("berthd", b.ctl, all); err != nil {
				return res, err
			}
		}
	}
	progress("removing berthd's containers")
	return res, nil
}

// quiesceLimit bounds the wait for a berthd's background work after a
// run (berthd.Quiesce).
const quiesceLimit = 5 * time.Second

// runRounds runs the warm-up and measured rounds of run --rm /bin/true:
// each round runs every path once, the first path rotating from round to
// round, so that drift and noise on the machine hit all paths alike.
func runRounds(ctx context.Context, cfg config, w *workspace, fl *floor.Runner, b, ref *berth, cd *containerd, res *results) error {
	type path struct {
		name string
		dst  *stats.Samples
		once func() (time.Duration, error)
	}
	paths := []path{
		{"runc floor", &res.floor, func() (time.Duration, error) {
			// The floor waits for runc's detached init with wait4, which
			// needs this process to be its subreaper; only for this path,
			// so that shims never become children of the benchmark.
			if err := proc.SetSubreaper(true); err != nil {
				return 0, err
			}
			defer proc.SetSubreaper(false)
			return fl.Once(ctx)
		}},
		{"berthctl run --rm", &res.cli, func() (time.Duration, error) {
			d, win, err := b.runOnce(w.newID("cli"))
			if err == nil {
				res.traceWindows = append(res.traceWindows, win)
			}
			return d, err
		}},
		{"client library", &res.library, func() (time.Duration, error) { return b.libraryOnce(ctx, w.newID("lib")) }},
	}
	if ref != nil {
		paths = append(paths, path{"berthctl run --rm, reference build", &res.refCLI, func() (time.Duration, error) {
			d, _, err := ref.runOnce(w.newID("ref"))
			return d, err
		}})
	}
	if cd != nil {
		paths = append(paths, path{"ctr run --rm", &res.ctrRun, func() (time.Duration, error) { return cd.runOnce(w.newID("ctr")) }})
	}
	total := cfg.warmup + cfg.n
	cpu := func(b *berth) time.Duration {
		if b == nil {
			return 0
		}
		d, err := proc.ReadCPU(b.d.Pid())
		if err != nil {
			progress("CPU time of berthd: %v", err)
		}
		return d
	}
	berthCPU, refCPU := cpu(b), cpu(ref)
	defer func() {
		res.berthCPU = (cpu(b) - berthCPU) / time.Duration(2*total)
		if ref != nil {
			res.refCPU = (cpu(ref) - refCPU) / time.Duration(total)
		}
	}()
	for i := range total {
		if err := ctx.Err(); err != nil {
			return err
		}
		progress("round %d/%d", i+1, total)
		for k := range paths {
			p := paths[(i+k)%len(paths)]
			d, err := p.once()
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			// Untimed: what a berthd still does after a run returned
			// (the shim's exit and the runtime's delete, the spare's
			// refill) must not land in the next path's time.
			for _, d := range []*berth{b, ref} {
				if d != nil && !berthd.Quiesce(d.state, 1, quiesceLimit) {
					progress("%s still busy %v after a run", d.state, quiesceLimit)
				}
			}
			if i >= cfg.warmup {
				*p.dst = append(*p.dst, d)
			}
		}
	}
	return nil
}

// settle waits cfg.settleSeconds, so that a daemon's memory is read at
// rest.
func settle(ctx context.Context, cfg config) error {
	select {
	case <-time.After(time.Duration(cfg.settleSeconds * float64(time.Second))):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sumMemory adds up the memory of pids.
func sumMemory(pids []int) (shimMemory, error) {
	s := shimMemory{n: len(pids)}
	for _, pid := range pids {
		m, err := proc.ReadMemory(pid)
		if err != nil {
			return s, err
		}
		s.pssKB += m.PSSKB
		s.rssKB += m.RSSKB
		s.anonKB += m.PSSAnonKB
		s.fileKB += m.PSSFileKB
	}
	return s, nil
}
