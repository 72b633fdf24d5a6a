// Command daemonbench measures berthd as users meet it: the latency of
// `berthctl run --rm … /bin/true` against runc driven directly (the floor)
// and against containerd with ctr, the daemon's memory idle and with
// running containers, and the time a killed daemon takes to serve again
// with 10 and 100 running containers. It prints figures, ratios and
// whether each goal is met; it is a benchmark, not a test, and exits
// non-zero only when the benchmark itself fails.
//
//	go run ./bench/daemonbench -berthd bin/berthd -berthctl bin/berthctl -shim bin/berth-shim [-n 20]
//
// It needs root, runc and a static busybox; containerd and ctr are
// measured when they start, and named loudly as missing when they do not.
// Everything it makes lives in a temp folder, a short folder under /run,
// and a namespace unique to the run; all of it is removed at the end, also
// on SIGINT or SIGTERM. See bench/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/berthrt/berth/bench/internal/proc"
	"github.com/berthrt/berth/internal/spantrace"
)

// Goals.
const (
	goalFloorRatio      = 1.3  // berthctl run --rm over the runc floor, medians
	goalContainerdRatio = 0.5  // berthctl run --rm over ctr run --rm, medians
	goalRSSMiB          = 30.0 // berthd idle and with memContainers running
	goalRestartSmallMS  = 100.0
	goalRestartLargeMS  = 1000.0
)

// config is what the flags say.
type config struct {
	berthd, berthctl, shim string
	runtime, busybox       string
	rootfsScript           string
	containerd, ctr        string
	n, warmup              int
	restarts               int // restarts measured per state
	small, large           int // running containers: memory and restart; restart only
	settleSeconds          float64
	trace                  string // BERTH_TRACE file; "" for none
	// ref is a folder with the berthd, berthctl and berth-shim of a
	// reference build (the build before a change); "" for none.
	ref     string
	refBins *config // berthd, berthctl, shim of ref, once resolved
}

func main() {
	os.Exit(mainCode())
}

// mainCode runs the benchmark and returns the exit code, after every
// deferred cleanup has run.
func mainCode() int {
	var cfg config
	flag.StringVar(&cfg.berthd, "berthd", "bin/berthd", "berthd binary to measure")
	flag.StringVar(&cfg.berthctl, "berthctl", "bin/berthctl", "berthctl binary to measure")
	flag.StringVar(&cfg.shim, "shim", "bin/berth-shim", "berth-shim binary berthd starts (runtime.shim)")
	flag.StringVar(&cfg.runtime, "runtime", "runc", "OCI runtime, a name in PATH or a path; berthd and the floor use it")
	flag.StringVar(&cfg.busybox, "busybox", "busybox", "static busybox, a name in PATH or a path (checked; the script copies it)")
	flag.StringVar(&cfg.rootfsScript, "rootfs-script", "scripts/busybox-rootfs.sh", "script that makes the busybox rootfs in the folder it is given")
	flag.StringVar(&cfg.containerd, "containerd", "containerd", "containerd binary to compare with (\"\": skip)")
	flag.StringVar(&cfg.ctr, "ctr", "ctr", "ctr binary")
	flag.IntVar(&cfg.n, "n", 20, "measured rounds of run --rm, each path once per round")
	flag.IntVar(&cfg.warmup, "warmup", 1, "unmeasured rounds first")
	flag.IntVar(&cfg.restarts, "restarts", 5, "restarts measured with each number of running containers")
	flag.IntVar(&cfg.small, "containers", 10, "running containers for the memory figures and the first restart figure")
	flag.IntVar(&cfg.large, "many", 100, "running containers for the second restart figure (0: skip)")
	flag.Float64Var(&cfg.settleSeconds, "settle", 2, "seconds a daemon idles before its memory is read")
	flag.StringVar(&cfg.trace, "trace", "", "trace berthd, its shims and berthctl into this file (BERTH_TRACE) and print where the time of run --rm goes; tracing adds a little to berth's figures")
	flag.StringVar(&cfg.ref, "ref", "", "folder with berthd, berthctl and berth-shim of a reference build (say, main before a change): a second berthd of its own, whose berthctl run --rm joins the interleaved rounds, for before/after figures from one run")
	flag.Parse()
	if err := cfg.resolve(); err != nil {
		fmt.Fprintf(os.Stderr, "daemonbench: %v\n", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := benchmark(ctx, cfg)
	if code := proc.ExitCode(ctx, "daemonbench", err); code != 0 {
		return code
	}
	report(os.Stdout, cfg, res)
	if cfg.trace != "" {
		if err := reportTrace(os.Stdout, cfg.trace, res.traceWindows); err != nil {
			fmt.Fprintf(os.Stderr, "daemonbench: trace: %v\n", err)
			return 1
		}
	}
	return 0
}

// resolve checks the environment and makes the binaries absolute paths.
func (c *config) resolve() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (runc, berthd)")
	}
	if c.n < 1 || c.warmup < 0 || c.restarts < 1 || c.small < 1 || c.large < 0 || c.settleSeconds < 0 {
		return fmt.Errorf("need -n ≥ 1, -warmup ≥ 0, -restarts ≥ 1, -containers ≥ 1, -many ≥ 0, -settle ≥ 0")
	}
	if c.trace != "" {
		abs, err := filepath.Abs(c.trace)
		if err != nil {
			return err
		}
		c.trace = abs
		// berthd passes its environment on to its shims; berthctl
		// inherits this process's.
		os.Setenv(spantrace.Env, abs)
	}
	bins := []*string{&c.berthd, &c.berthctl, &c.shim, &c.runtime, &c.busybox, &c.rootfsScript}
	if c.ref != "" {
		c.refBins = &config{berthd: filepath.Join(c.ref, "berthd"), berthctl: filepath.Join(c.ref, "berthctl"), shim: filepath.Join(c.ref, "berth-shim")}
		bins = append(bins, &c.refBins.berthd, &c.refBins.berthctl, &c.refBins.shim)
	}
	for _, p := range bins {
		path, err := proc.LookPath(*p)
		if err != nil {
			return fmt.Errorf("%w (for berth's binaries, run make build)", err)
		}
		*p = path
	}
	return nil
}

// progress prints a step on stderr, so that stdout holds only the report.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "daemonbench: "+format+"\n", args...)
}

// ids returns n new container ids of kind.
func (w *workspace) ids(kind string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = w.newID(kind)
	}
	return ids
}
