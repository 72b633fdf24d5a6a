// Command unpackbench measures pull with unpack, and running a container
// from an image, beside containerd in the same run. It starts a loopback
// docker-registry, builds and pushes two images (4 layers of one 64 MiB
// file of random bytes each; one layer of 20,000 small files) and a
// busybox image, starts its own berthd and Debian's containerd (own root,
// state and socket), and then, in interleaved rounds:
//
//   - berthctl images pull (unpack into overlayfs) and ctr images pull
//     --plain-http (unpack into overlayfs), each image removed with
//     everything it holds (images rm --sync, checked) before the next
//     round, so that every pull fetches and unpacks from nothing;
//   - berthctl run --rm IMAGE ID /bin/true, the runc floor (create, start,
//     wait, delete of a prepared bundle on a plain folder) and ctr run
//     --rm IMAGE ID /bin/true.
//
// It prints medians, MiB/s and the ratios the issue sets goals for.
// Everything it starts is stopped and its folders removed at the end, also
// on error and on SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/berthrt/berth/bench/internal/daemon"
	"github.com/berthrt/berth/bench/internal/proc"
	"github.com/berthrt/berth/bench/internal/stats"
	"github.com/berthrt/berth/bench/internal/sweep"
)

type config struct {
	berthd, berthctl, shim, runtime, registry, containerd, ctr string
	rounds, runRounds, layers, layerMiB, files                 int
	ref, refCtl                                                string
	fetchOnly                                                  bool
	rateMiB                                                    float64
}

func main() {
	var cfg config
	flag.StringVar(&cfg.berthd, "berthd", "bin/berthd", "berthd binary")
	flag.StringVar(&cfg.berthctl, "berthctl", "bin/berthctl", "berthctl binary")
	flag.StringVar(&cfg.shim, "shim", "bin/berth-shim", "berth-shim binary")
	flag.StringVar(&cfg.runtime, "runtime", "runc", "OCI runtime")
	flag.StringVar(&cfg.registry, "registry", "docker-registry", "docker-registry binary")
	flag.StringVar(&cfg.containerd, "containerd", "containerd", `containerd binary ("" or absent: not measured)`)
	flag.StringVar(&cfg.ctr, "ctr", "ctr", "ctr binary")
	flag.IntVar(&cfg.rounds, "rounds", 5, "interleaved rounds of each pull")
	flag.IntVar(&cfg.runRounds, "run-rounds", 20, "interleaved rounds of run --rm")
	flag.IntVar(&cfg.layers, "layers", 4, "layers of the big image")
	flag.IntVar(&cfg.layerMiB, "layer-mib", 64, "MiB of each layer of the big image")
	flag.IntVar(&cfg.files, "files", 20000, "files of the small-files image")
	flag.StringVar(&cfg.ref, "ref", "", "another berthd binary whose pulls are timed in the same rounds (berth-ref), to compare builds")
	flag.StringVar(&cfg.refCtl, "ref-ctl", "", "another berthctl binary whose run --rm IMAGE is timed against the same berthd in the same rounds, to compare client builds")
	flag.Float64Var(&cfg.rateMiB, "rate", 0, "MiB/s: pull through a loopback proxy that paces the registry's answers to this rate over all connections (a registry across a network link); 0: straight from the registry")
	flag.BoolVar(&cfg.fetchOnly, "fetch-only", false, "also time berth's pull without unpack (--no-unpack) in the same rounds")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, cfg)
	code := proc.ExitCode(ctx, "unpackbench", err)
	if code == 0 {
		res.print(cfg)
	}
	os.Exit(code)
}

// results are what print prints.
type results struct {
	version    string   // containerd's, "" when it was not measured
	contenders []string // berth, containerd when measured, then -fetch-only's and -ref's
	images     []image
	pulls      [][]stats.Samples // [image][contender]
	runNames   []string
	runs       []stats.Samples // the floor, each contender, berthctl-ref (-ref-ctl), berth --rootfs
}

func run(ctx context.Context, cfg config) (res results, err error) {
	for _, p := range []*string{&cfg.berthd, &cfg.berthctl, &cfg.shim, &cfg.runtime} {
		if *p, err = proc.LookPath(*p); err != nil {
			return res, err
		}
	}
	// On disk (overlayfs needs an upper of ext4 or xfs, and both daemons
	// write their layers there), not on a tmpfs.
	dir, err := os.MkdirTemp("/var/tmp", "unpackbench-")
	if err != nil {
		return res, err
	}
	// Short: it holds the daemons' sockets and their shims'.
	runDir, err := os.MkdirTemp("/run", "ub-")
	if err != nil {
		return res, errors.Join(err, os.RemoveAll(dir))
	}
	ns := "ub-" + strings.TrimPrefix(filepath.Base(runDir), "ub-")
	var stops []func() error // last first
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			err = errors.Join(err, stops[i]())
		}
		err = errors.Join(err, sweep.Mounts(runDir), sweep.Mounts(dir), sweep.Cgroups(ns),
			os.RemoveAll(runDir), os.RemoveAll(dir))
	}()

	reg, err := daemon.StartRegistry(ctx, cfg.registry, dir)
	if err != nil {
		return res, err
	}
	stops = append(stops, reg.Stop)
	images, busybox, err := buildImages(ctx, cfg, dir, reg.Addr)
	if err != nil {
		return res, err
	}

	berth, err := startBerth(ctx, cfg, "berth", cfg.berthd, "b", dir, runDir, ns)
	if err != nil {
		return res, err
	}
	stops = append(stops, berth.stop)
	contenders := []*contender{berth}
	var extra []*contender // pulls only, after berth and containerd
	if cfg.fetchOnly {
		extra = append(extra, fetchOnly(berth))
	}
	if cfg.ref != "" {
		ref, err := startBerth(ctx, cfg, "berth-ref", cfg.ref, "r", dir, runDir, ns)
		if err != nil {
			return res, err
		}
		stops = append(stops, ref.stop)
		extra = append(extra, ref)
	}
	version := ""
	if cfg.containerd != "" {
		cd, v, err := startContainerd(ctx, cfg, dir, runDir, ns)
		if err != nil {
			fmt.Printf("!!! containerd NOT MEASURED: %v\n", err)
		} else {
			stops = append(stops, cd.stop)
			contenders = append(contenders, cd)
			version = v
		}
	}

	pullAddr := reg.Addr
	if cfg.rateMiB > 0 {
		p, err := startRateProxy(reg.Addr, cfg.rateMiB)
		if err != nil {
			return res, err
		}
		stops = append(stops, p.Stop)
		pullAddr = p.Addr()
	}
	pulls := make([][]stats.Samples, len(images)) // [image][contender]
	for i, img := range images {
		progress("pull %s: %d rounds", img.name, cfg.rounds)
		ref := strings.Replace(img.ref, reg.Addr, pullAddr, 1)
		if pulls[i], err = pullRounds(ctx, append(slices.Clip(contenders), extra...), ref, cfg.rounds); err != nil {
			return res, err
		}
	}
	progress("run --rm: %d rounds", cfg.runRounds)
	runNames, runs, err := runRounds(ctx, cfg, contenders, dir, runDir, ns, busybox)
	if err != nil {
		return res, err
	}
	res = results{version: version, images: images, pulls: pulls, runNames: runNames, runs: runs}
	for _, c := range append(contenders, extra...) {
		res.contenders = append(res.contenders, c.name)
	}
	return res, nil
}

// buildImages builds the two pull images and busybox, and pushes them to
// the registry at addr.
func buildImages(ctx context.Context, cfg config, dir, addr string) ([]image, image, error) {
	progress("building and pushing the images")
	big, bigBytes, err := bigImage(cfg.layers, cfg.layerMiB<<20)
	if err != nil {
		return nil, image{}, err
	}
	small, smallBytes, err := smallImage(cfg.files)
	if err != nil {
		return nil, image{}, err
	}
	bb, err := busyboxImage()
	if err != nil {
		return nil, image{}, err
	}
	images := []image{
		{name: fmt.Sprintf("%d×%d MiB random", cfg.layers, cfg.layerMiB), ref: addr + "/bench/big:1", bytes: bigBytes, files: cfg.layers, img: big},
		{name: fmt.Sprintf("%d small files", cfg.files), ref: addr + "/bench/small:1", bytes: smallBytes, files: cfg.files, img: small},
	}
	busybox := image{name: "busybox", ref: addr + "/bench/busybox:1", img: bb}
	for _, img := range append(images, busybox) {
		if err := push(ctx, dir, img.ref, img.img); err != nil {
			return nil, image{}, fmt.Errorf("push %s: %w", img.ref, err)
		}
	}
	return images, busybox, nil
}

// pullRounds times each contender's pull of ref, rounds times, the order
// turned by one each round; before each pull the page cache's dirty pages
// are written out (sync, not timed), and after it the image is removed
// with its content and snapshots, which is checked.
func pullRounds(ctx context.Context, cs []*contender, ref string, rounds int) ([]stats.Samples, error) {
	times := make([]stats.Samples, len(cs))
	for round := range rounds {
		for k := range cs {
			i := (k + round) % len(cs)
			c := cs[i]
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			syscall.Sync()
			start := time.Now()
			if _, err := c.run(c.pull(ref)...); err != nil {
				return nil, fmt.Errorf("round %d: %w", round, err)
			}
			times[i] = append(times[i], time.Since(start))
			if _, err := c.run(c.clear(ref)...); err != nil {
				return nil, fmt.Errorf("round %d: %w", round, err)
			}
			left, err := c.left()
			if err != nil {
				return nil, err
			}
			if left != "" {
				return nil, fmt.Errorf("round %d: %s still holds after %s:\n%s", round, c.name, strings.Join(c.clear(ref), " "), left)
			}
		}
	}
	return times, nil
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "unpackbench: "+format+"\n", args...)
}
