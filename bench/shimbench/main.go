// Command shimbench measures what berth-shim costs over running runc
// directly, and how much memory an idle shim holds. It prints figures,
// ratios and whether each goal is met; it is a benchmark, not a test, and
// exits non-zero only when the benchmark itself fails.
//
//	go run ./bench/shimbench -shim bin/berth-shim [-n 20] [-warmup 1]
//
// It needs root, runc and a static busybox. Everything it makes lives in
// one temporary folder that it removes, with every container and shim, when
// it ends, also on SIGINT or SIGTERM. See bench/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/berthrt/berth/bench/internal/proc"
	"github.com/berthrt/berth/bench/internal/stats"
)

// Goals.
const (
	goalRatio  = 1.15 // shim create→start→wait→delete over the runc floor, medians
	goalPSSMiB = 2.0
	goalRSSMiB = 8.0
)

// config is what the flags say.
type config struct {
	shim    string
	runtime string
	busybox string
	n       int
	warmup  int
	smaps   string        // where to copy the idle shim's /proc/PID/smaps, if set
	shared  int           // idle shims measured together; 0 or 1 skips that figure
	settle  time.Duration // how long idle shims run before they are measured
}

// results are the figures of one benchmark run.
type results struct {
	floor     stats.Samples
	shimCore  stats.Samples
	shimTotal stats.Samples
	mem       proc.Memory // one idle shim alone
	shared    proc.Memory // mean of cfg.shared idle shims running together
}

func main() {
	os.Exit(mainCode())
}

// mainCode runs the benchmark and returns the exit code, after every
// deferred cleanup has run.
func mainCode() int {
	var cfg config
	flag.StringVar(&cfg.shim, "shim", "bin/berth-shim", "berth-shim binary to measure")
	flag.StringVar(&cfg.runtime, "runtime", "runc", "OCI runtime, a name in PATH or a path; both paths use it")
	flag.StringVar(&cfg.busybox, "busybox", "busybox", "static busybox for the rootfs, a name in PATH or a path")
	flag.IntVar(&cfg.n, "n", 20, "measured iterations of each path")
	flag.IntVar(&cfg.warmup, "warmup", 1, "unmeasured iterations of each path first")
	flag.IntVar(&cfg.shared, "shared", 10, "idle shims measured together, sharing their binary's pages (0: skip)")
	flag.DurationVar(&cfg.settle, "settle", 2*time.Second, "how long idle shims run before their memory is read; a Go process that has collected garbage once collects again after every 2 idle minutes, and its memory settles after a few collections: -settle 5m shows that")
	flag.StringVar(&cfg.smaps, "smaps", "", "copy the idle shim's /proc/PID/smaps to this file, to see where its memory goes")
	flag.Parse()
	if err := cfg.resolve(); err != nil {
		fmt.Fprintf(os.Stderr, "shimbench: %v\n", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := benchmark(ctx, cfg)
	if code := proc.ExitCode(ctx, "shimbench", err); code != 0 {
		return code
	}
	report(os.Stdout, cfg, res)
	return 0
}

// resolve checks the environment and makes the binaries absolute paths.
func (c *config) resolve() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (runc)")
	}
	if c.n < 1 || c.warmup < 0 || c.shared < 0 {
		return fmt.Errorf("-n %d -warmup %d -shared %d: need n ≥ 1, warmup ≥ 0 and shared ≥ 0", c.n, c.warmup, c.shared)
	}
	for _, p := range []*string{&c.shim, &c.runtime, &c.busybox} {
		path, err := proc.LookPath(*p)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w (for berth-shim, run make build)", err)
		} else if err != nil {
			return err
		}
		*p = path
	}
	return nil
}

// benchmark runs both paths interleaved, then the memory measurement, in
// one workspace that it always closes.
func benchmark(ctx context.Context, cfg config) (res results, retErr error) {
	w, err := newWorkspace(cfg.runtime, cfg.shim, cfg.busybox)
	if err != nil {
		return res, err
	}
	defer func() {
		if err := w.Close(); err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("cleanup: %w", err))
		}
	}()

	total := cfg.warmup + cfg.n
	for i := range total {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		fmt.Fprintf(os.Stderr, "\rshimbench: iteration %d/%d", i+1, total)
		// Alternate which path goes first, so that drift and noise hit both.
		floorFirst := i%2 == 0
		for _, floorTurn := range []bool{floorFirst, !floorFirst} {
			if floorTurn {
				d, err := w.floor.Once(ctx)
				if err != nil {
					return res, fmt.Errorf("runc floor: %w", err)
				}
				if i >= cfg.warmup {
					res.floor = append(res.floor, d)
				}
				continue
			}
			t, err := w.shimOnce(ctx)
			if err != nil {
				return res, fmt.Errorf("shim path: %w", err)
			}
			if i >= cfg.warmup {
				res.shimCore = append(res.shimCore, t.core)
				res.shimTotal = append(res.shimTotal, t.total)
			}
		}
	}
	fmt.Fprintf(os.Stderr, "\rshimbench: idle shim memory (%v settle)     \n", cfg.settle)
	mems, err := w.shimMemory(ctx, 1, cfg.settle, cfg.smaps)
	if err != nil {
		return res, fmt.Errorf("idle memory: %w", err)
	}
	res.mem = mems[0]
	if cfg.shared > 1 {
		fmt.Fprintf(os.Stderr, "shimbench: %d idle shims together (%v settle)\n", cfg.shared, cfg.settle)
		if mems, err = w.shimMemory(ctx, cfg.shared, cfg.settle, ""); err != nil {
			return res, fmt.Errorf("idle memory of %d shims: %w", cfg.shared, err)
		}
		res.shared = meanMemory(mems)
	}
	return res, nil
}

// report prints the table.
func report(f *os.File, cfg config, res results) {
	fmt.Fprintf(f, "berth-shim vs runc: %d iterations each, interleaved, after %d warm-up (%s, %d CPUs)\n",
		cfg.n, cfg.warmup, runtimeVersion(cfg.runtime), runtime.NumCPU())
	row := func(name string, s stats.Samples) {
		fmt.Fprintf(f, "  %-38s median %6.1f ms  p90 %6.1f ms\n", name, stats.MS(s.Median()), stats.MS(s.P90()))
	}
	row("shim create→start→wait→delete", res.shimCore)
	row("runc floor", res.floor)
	ratio := stats.Ratio(res.shimCore, res.floor)
	fmt.Fprintf(f, "  %-38s %.2f (goal ≤ %.2f: %s)\n", "ratio", ratio, goalRatio, verdict(ratio <= goalRatio))
	row("shim total (start … shutdown)", res.shimTotal)
	fmt.Fprintf(f, "  %-38s %.2f (informational)\n", "ratio total/floor", stats.Ratio(res.shimTotal, res.floor))
	pss, rss := proc.MiB(res.mem.PSSKB), proc.MiB(res.mem.RSSKB)
	fmt.Fprintf(f, "  %-38s PSS %.1f MiB, RSS %.1f MiB (goals %g / %g MiB: %s/%s)\n", fmt.Sprintf("shim idle memory (%v)", cfg.settle),
		pss, rss, goalPSSMiB, goalRSSMiB, verdict(pss <= goalPSSMiB), verdict(rss <= goalRSSMiB))
	split(f, res.mem)
	if cfg.shared > 1 {
		fmt.Fprintf(f, "  %-38s PSS %.1f MiB, RSS %.1f MiB (informational)\n",
			fmt.Sprintf("%d idle shims together, mean (%v)", cfg.shared, cfg.settle),
			proc.MiB(res.shared.PSSKB), proc.MiB(res.shared.RSSKB))
		split(f, res.shared)
	}
	if p, err := exec.LookPath("containerd-shim-runc-v2"); err == nil {
		fmt.Fprintf(f, "  %-38s %s (informational, not measured: it needs containerd)\n", "containerd-shim-runc-v2", p)
	}
}

// split prints the anonymous and file parts of a PSS figure, when known.
func split(f *os.File, m proc.Memory) {
	if m.PSSAnonKB >= 0 && m.PSSFileKB >= 0 {
		fmt.Fprintf(f, "  %-38s anon %.1f MiB, file %.1f MiB (informational)\n", "  of which PSS",
			proc.MiB(m.PSSAnonKB), proc.MiB(m.PSSFileKB))
	}
}

func verdict(met bool) string {
	if met {
		return "met"
	}
	return "missed"
}

// runtimeVersion returns the first line of `runtime --version`.
func runtimeVersion(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return filepath.Base(bin)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return line
}
