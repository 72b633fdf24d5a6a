package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/berthrt/berth/archive"
	"github.com/berthrt/berth/bench/internal/floor"
	"github.com/berthrt/berth/bench/internal/proc"
	"github.com/berthrt/berth/bench/internal/stats"
	"github.com/berthrt/berth/internal/testimage"
)

// warmupRounds of run --rm are run first and not counted: the first
// container of a daemon pays for caches the others find warm.
const warmupRounds = 1

// busyboxImage is testimage's busybox (the host's busybox-static).
func busyboxImage() (*testimage.Image, error) { return testimage.Busybox("") }

// runPath is one way of running /bin/true; once returns its time.
type runPath struct {
	name string
	once func(id string) (time.Duration, error)
}

// runRounds pulls busybox into every contender (not timed), then times
// `run --rm busybox ID /bin/true` of each, the runc floor on a plain
// folder holding the same files, and, for reference, `berthctl run --rm
// --rootfs` on that folder (no image, no snapshot), the order turned each
// round. It returns the paths' names and samples: the floor first, then
// each contender's, then -ref-ctl's (berthctl-ref run --rm IMAGE against
// the first contender's daemon), then the reference.
func runRounds(ctx context.Context, cfg config, cs []*contender, dir, runDir, ns string, busybox image) (_ []string, _ []stats.Samples, err error) {
	rootfs := filepath.Join(dir, "rootfs")
	if err := busyboxFolder(ctx, rootfs); err != nil {
		return nil, nil, err
	}
	fl := &floor.Runner{Runtime: cfg.runtime, Root: filepath.Join(runDir, "floor-runc"), Dir: filepath.Join(runDir, "floor"), Rootfs: rootfs, Namespace: ns}
	defer func() { err = errors.Join(err, fl.Close()) }()
	paths := []runPath{{name: "runc floor (create, start, wait, delete)", once: func(string) (time.Duration, error) {
		// The floor waits for runc's detached init with wait4, which
		// needs this process to be its subreaper; only for this path,
		// so that shims never become children of the benchmark.
		if err := proc.SetSubreaper(true); err != nil {
			return 0, err
		}
		defer proc.SetSubreaper(false)
		return fl.Once(ctx)
	}}}
	timed := func(c *contender, args func(id string) []string) func(string) (time.Duration, error) {
		return func(id string) (time.Duration, error) {
			start := time.Now()
			_, err := c.run(args(id)...)
			d := time.Since(start)
			if err == nil && c.quiesce != nil {
				// The shim's exit and the runtime's delete, which
				// berth finishes after run --rm returned, and the
				// spare's refill must not land in the next path's time.
				c.quiesce()
			}
			return d, err
		}
	}
	for _, c := range cs {
		if _, err := c.run(c.pull(busybox.ref)...); err != nil {
			return nil, nil, err
		}
		paths = append(paths, runPath{name: c.runName, once: timed(c, func(id string) []string { return c.runRm(busybox.ref, id) })})
	}
	if cfg.refCtl != "" {
		ref := *cs[0]
		ref.cli.bin = cfg.refCtl
		paths = append(paths, runPath{name: "berthctl-ref run --rm IMAGE", once: timed(&ref, func(id string) []string { return ref.runRm(busybox.ref, id) })})
	}
	paths = append(paths, runPath{name: "berthctl run --rm --rootfs (no image)", once: timed(cs[0], func(id string) []string {
		return []string{"run", "--rm", "--rootfs", rootfs, id, "/bin/true"}
	})})
	times := make([]stats.Samples, len(paths))
	for round := range warmupRounds + cfg.runRounds {
		for k := range paths {
			if err := ctx.Err(); err != nil {
				return nil, nil, err
			}
			i := (k + round) % len(paths)
			d, err := paths[i].once(fmt.Sprintf("run-%d-%d", round, i))
			if err != nil {
				return nil, nil, fmt.Errorf("round %d: %s: %w", round, paths[i].name, err)
			}
			if round >= warmupRounds {
				times[i] = append(times[i], d)
			}
		}
	}
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = p.name
	}
	return names, times, nil
}

// busyboxFolder writes busybox's files into the plain folder dir, the
// floor's root filesystem.
func busyboxFolder(ctx context.Context, dir string) error {
	entries, err := testimage.BusyboxEntries("")
	if err != nil {
		return err
	}
	tar, err := testimage.Tar(entries)
	if err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	_, err = archive.Apply(ctx, dir, bytes.NewReader(tar))
	return err
}

const (
	goalBig   = 0.3 // berth/containerd, pull of the big image (issue 15)
	goalSmall = 0.8 // berth/containerd, pull of the small-files image (issue 15)
	goalFloor = 1.3 // berth run --rm / runc floor
	goalCtr   = 0.5 // berth run --rm / ctr run --rm
)

// print prints the table.
func (res results) print(cfg config) {
	version, cs, images, pulls, runs := res.version, res.contenders, res.images, res.pulls, res.runs
	fmt.Printf("\nunpackbench: pull + unpack into overlayfs from a loopback docker-registry (gzip layers, compress/gzip level 6), %d interleaved rounds; medians\n", cfg.rounds)
	if version != "" {
		fmt.Printf("containerd: %s\n", version)
	}
	goals := []float64{goalBig, goalSmall}
	fmt.Printf("%-22s %-18s %9s %9s %9s\n", "image", "", "median", "p90", "MiB/s")
	for i, img := range images {
		mib := float64(img.bytes) / (1 << 20)
		for j, c := range cs {
			med := pulls[i][j].Median()
			fmt.Printf("%-22s %-18s %8.2fs %8.2fs %9.0f\n", img.name, c, med.Seconds(), pulls[i][j].P90().Seconds(), mib/med.Seconds())
		}
		if version != "" {
			r := stats.Ratio(pulls[i][0], pulls[i][1])
			fmt.Printf("%-22s berth/containerd %.2f (goal ≤ %.1f: %s)\n", "", r, goals[i], verdict(r, goals[i]))
		}
		for j := 1; j < len(cs); j++ {
			if cs[j] != "containerd" {
				fmt.Printf("%-22s berth/%s %.2f\n", "", cs[j], stats.Ratio(pulls[i][0], pulls[i][j]))
			}
		}
	}
	fmt.Printf("\nrun --rm IMAGE ID /bin/true (busybox), %d interleaved rounds after %d warm-up; medians\n", cfg.runRounds, warmupRounds)
	for i, name := range res.runNames {
		fmt.Printf("%-42s %8.1f ms %8.1f ms (p90)\n", name, stats.MS(runs[i].Median()), stats.MS(runs[i].P90()))
	}
	r := stats.Ratio(runs[1], runs[0])
	fmt.Printf("berth/floor %.2f (goal ≤ %.1f: %s)\n", r, goalFloor, verdict(r, goalFloor))
	if version != "" {
		r := stats.Ratio(runs[1], runs[2])
		fmt.Printf("berth/containerd %.2f (goal ≤ %.1f: %s)\n", r, goalCtr, verdict(r, goalCtr))
	}
	if cfg.refCtl != "" {
		fmt.Printf("berthctl/berthctl-ref %.2f (run --rm IMAGE, same berthd)\n", stats.Ratio(runs[1], runs[len(runs)-2]))
	}
}

func verdict(r, goal float64) string {
	if r <= 0 || math.IsNaN(r) || math.IsInf(r, 0) {
		return "not measured"
	}
	if r <= goal {
		return "met"
	}
	return "MISSED"
}
