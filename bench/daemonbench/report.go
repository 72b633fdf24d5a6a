package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/berthrt/berth/bench/internal/proc"
	"github.com/berthrt/berth/bench/internal/stats"
)

// report prints the figures, the ratios and whether each goal is met.
func report(f io.Writer, cfg config, res results) {
	cd := res.containerdMissing == ""
	fmt.Fprintf(f, "berthd vs runc floor vs containerd: %d rounds, interleaved, after %d warm-up (%s; %s; %d CPUs)\n",
		cfg.n, cfg.warmup, firstLine(cfg.runtime, "--version"), orMissing(res.containerdVersion), runtime.NumCPU())
	if !cd {
		fmt.Fprintf(f, "  !!! containerd NOT MEASURED: %s\n", res.containerdMissing)
	}
	fmt.Fprintf(f, "  %-44s %s\n", "binaries", binarySizes(cfg))

	fmt.Fprintf(f, "run --rm /bin/true\n")
	row := func(name string, s stats.Samples) {
		fmt.Fprintf(f, "  %-44s median %6.1f ms  p90 %6.1f ms\n", name, stats.MS(s.Median()), stats.MS(s.P90()))
	}
	row("runc floor (create, start, wait, delete)", res.floor)
	row("berthctl run --rm", res.cli)
	row("client library (NewContainer … Delete)", res.library)
	if cfg.ref != "" {
		row("berthctl run --rm, reference build", res.refCLI)
	}
	if cd {
		row("ctr run --rm (containerd)", res.ctrRun)
	}
	ratio := stats.Ratio(res.cli, res.floor)
	fmt.Fprintf(f, "  %-44s %.2f (goal ≤ %.2f: %s)\n", "berth/floor", ratio, goalFloorRatio, verdict(ratio <= goalFloorRatio))
	if cd {
		ratio = stats.Ratio(res.cli, res.ctrRun)
		fmt.Fprintf(f, "  %-44s %.2f (goal ≤ %.2f: %s)\n", "berth/containerd", ratio, goalContainerdRatio, verdict(ratio <= goalContainerdRatio))
	}
	if cfg.ref != "" {
		fmt.Fprintf(f, "  %-44s %.2f (informational; reference: %s)\n", "reference/floor", stats.Ratio(res.refCLI, res.floor), cfg.ref)
		fmt.Fprintf(f, "  %-44s %.2f (informational: after/before)\n", "berth/reference", stats.Ratio(res.cli, res.refCLI))
		if cd {
			fmt.Fprintf(f, "  %-44s %.2f (informational)\n", "reference/containerd", stats.Ratio(res.refCLI, res.ctrRun))
		}
	}
	fmt.Fprintf(f, "  %-44s %.1f ms (informational: its own, not its children's)\n", "berthd CPU time per run", stats.MS(res.berthCPU))
	if cfg.ref != "" {
		fmt.Fprintf(f, "  %-44s %.1f ms (informational; after/before %.2f)\n", "berthd CPU time per run, reference build",
			stats.MS(res.refCPU), float64(res.berthCPU)/float64(res.refCPU))
	}
	fmt.Fprintf(f, "  %-44s %.2f (informational)\n", "client library/floor", stats.Ratio(res.library, res.floor))
	fmt.Fprintf(f, "  %-44s %.1f ms (informational: berthctl's own process)\n", "berthctl − client library, medians",
		stats.MS(res.cli.Median()-res.library.Median()))

	fmt.Fprintf(f, "daemon memory (smaps_rollup, after %gs idle)\n", cfg.settleSeconds)
	mem := func(name string, m proc.Memory, goal bool) {
		fmt.Fprintf(f, "  %-44s RSS %5.1f MiB  PSS %5.1f MiB (anon %.1f, file %.1f)", name,
			proc.MiB(m.RSSKB), proc.MiB(m.PSSKB), proc.MiB(m.PSSAnonKB), proc.MiB(m.PSSFileKB))
		if goal {
			rss := proc.MiB(m.RSSKB)
			fmt.Fprintf(f, " (goal RSS ≤ %g MiB: %s)", goalRSSMiB, verdict(rss <= goalRSSMiB))
		}
		fmt.Fprintln(f)
	}
	mem("berthd idle, fresh", res.berthIdle, true)
	mem(fmt.Sprintf("berthd idle, after the %d rounds", cfg.warmup+cfg.n), res.berthIdleAfter, false)
	mem(fmt.Sprintf("berthd with %d running containers", cfg.small), res.berthLoaded, true)
	if cd {
		mem("containerd idle, fresh (no CRI)", res.cdIdle, false)
		mem(fmt.Sprintf("containerd with %d running containers", cfg.small), res.cdLoaded, false)
	}
	shims := func(name string, s shimMemory) {
		fmt.Fprintf(f, "  %-44s RSS %5.1f MiB  PSS %5.1f MiB (anon %.1f, file %.1f) in all (informational)\n",
			fmt.Sprintf("%d %s", s.n, name), proc.MiB(s.rssKB), proc.MiB(s.pssKB), proc.MiB(s.anonKB), proc.MiB(s.fileKB))
	}
	shims("berth-shim", res.berthShims)
	if cd {
		shims("containerd-shim-runc-v2", res.cdShims)
	}

	fmt.Fprintf(f, "restart to ready (SIGKILL, start again; %d restarts each; times from the start of the new process)\n", cfg.restarts)
	restart := func(name string, rts []readyTimes, goalMS float64, ready string) {
		var answered, serving stats.Samples
		for _, rt := range rts {
			answered = append(answered, rt.answered)
			serving = append(serving, rt.serving)
		}
		fmt.Fprintf(f, "  %-44s median %6.1f ms  p90 %6.1f ms\n", name+": socket answers", stats.MS(answered.Median()), stats.MS(answered.P90()))
		fmt.Fprintf(f, "  %-44s median %6.1f ms  p90 %6.1f ms", name+": "+ready, stats.MS(serving.Median()), stats.MS(serving.P90()))
		if goalMS > 0 {
			fmt.Fprintf(f, " (goal ≤ %g ms: %s)", goalMS, verdict(stats.MS(serving.Median()) <= goalMS))
		}
		fmt.Fprintln(f)
	}
	restart(fmt.Sprintf("berthd, %d containers", cfg.small), res.restartSmall, goalRestartSmallMS, "SERVING")
	if len(res.restartLarge) > 0 {
		restart(fmt.Sprintf("berthd, %d containers", cfg.large), res.restartLarge, goalRestartLargeMS, "SERVING")
	}
	if cd {
		restart(fmt.Sprintf("containerd, %d containers", cfg.small), res.cdRestart, 0, "ctr version")
		fmt.Fprintf(f, "  %-44s median %6.1f ms (informational: ctr's own share of the line above)\n",
			"ctr version on a serving containerd", stats.MS(res.ctrVersion.Median()))
	}
	fmt.Fprintf(f, "  %-44s berthd %d/%d", "RUNNING after the last restart", res.verifiedSmall, cfg.small)
	if len(res.restartLarge) > 0 {
		fmt.Fprintf(f, " and %d/%d", res.verifiedLarge, cfg.large)
	}
	if cd {
		fmt.Fprintf(f, ", containerd %d/%d", res.cdVerified, cfg.small)
	}
	fmt.Fprintln(f)
}

func verdict(met bool) string {
	if met {
		return "met"
	}
	return "missed"
}

func orMissing(s string) string {
	if s == "" {
		return "containerd version unknown"
	}
	return s
}

// firstLine returns the first line of `bin args...`.
func firstLine(bin string, args ...string) string {
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		return bin
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return line
}

// binarySizes names the size of each berth binary measured.
func binarySizes(cfg config) string {
	var parts []string
	for _, p := range []string{cfg.berthd, cfg.berthctl, cfg.shim} {
		if st, err := os.Stat(p); err == nil {
			parts = append(parts, fmt.Sprintf("%s %.1f MB", filepath.Base(p), float64(st.Size())/1e6))
		}
	}
	return strings.Join(parts, ", ")
}
