// Command sparebench measures what starting one spare shim costs, the two
// ways berth has done it, interleaved: `berth-shim start --spare` (a Go
// process that creates the socket, starts `berth-shim serve` and waits for
// it: two process starts), as berthd did before issue 15, and
// internal/shimlaunch called in this process (berthd's way now: one). For
// each it reports the time until the spare serves, and the CPU time of
// everything but the serving shim itself, which is the same both ways:
// this process's own (fork, exec, the wait) plus, for start, start's.
//
//	go run ./bench/sparebench -shim bin/berth-shim [-n 30]
//
// It needs root (the shim's folder is under /run). Every spare it starts is
// killed and its folder removed as soon as it served; on SIGINT or SIGTERM
// it stops after the spare under way (spares also exit with this process).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/bench/internal/stats"
	"github.com/berthrt/berth/internal/shimlaunch"
	"github.com/berthrt/berth/shimapi"
)

func main() {
	shim := flag.String("shim", "bin/berth-shim", "berth-shim binary")
	n := flag.Int("n", 30, "spares started each way, interleaved")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *shim, *n); err != nil {
		fmt.Fprintf(os.Stderr, "sparebench: %v\n", err)
		os.Exit(1)
	}
}

// sample is one spare's start.
type sample struct{ wall, cpu time.Duration }

func run(ctx context.Context, shim string, n int) error {
	shim, err := filepath.Abs(shim)
	if err != nil {
		return err
	}
	root, err := os.MkdirTemp("/run", "sparebench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	self, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		return err
	}
	daemon := os.NewFile(uintptr(self), "daemon-pidfd")
	defer daemon.Close()

	ways := []struct {
		name  string
		start func(dir string) (time.Duration, error) // returns the CPU time of start's process
		wall  stats.Samples
		cpu   stats.Samples
	}{
		{name: "berth-shim start --spare (two process starts)", start: func(dir string) (time.Duration, error) {
			cmd := exec.Command(shim, "start", "--spare", "--bundle", dir, "--parent-pid", strconv.Itoa(os.Getpid()))
			if out, err := cmd.CombinedOutput(); err != nil {
				return 0, fmt.Errorf("berth-shim start: %v: %s", err, out)
			}
			return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
		}},
		{name: "shimlaunch in the daemon (one)", start: func(dir string) (time.Duration, error) {
			p, err := shimlaunch.Start(context.Background(), shimlaunch.Config{
				Binary: shim, Folder: dir, Args: []string{"--spare", "--bundle", dir},
				Daemon: daemon, Timeout: 10 * time.Second,
			})
			if err != nil {
				return 0, err
			}
			p.Reap()
			return 0, nil
		}},
	}
	for i := range n + 1 { // the first round warms up
		if ctx.Err() != nil {
			return ctx.Err()
		}
		for k := range ways {
			w := &ways[(i+k)%len(ways)]
			dir, err := os.MkdirTemp(root, "")
			if err != nil {
				return err
			}
			cpu0 := selfCPU()
			t0 := time.Now()
			child, err := w.start(dir)
			wall := time.Since(t0)
			cpu := selfCPU() - cpu0 + child
			if err != nil {
				return err
			}
			if pid, err := shimapi.ReadPidFile(dir); err == nil {
				unix.Kill(pid, unix.SIGKILL)
			}
			if i > 0 {
				w.wall = append(w.wall, wall)
				w.cpu = append(w.cpu, cpu)
			}
			time.Sleep(20 * time.Millisecond) // let the spare die off the next one's window
			os.RemoveAll(dir)
		}
	}
	fmt.Printf("spare shim start, %d each, interleaved (the serving shim's own CPU not counted)\n", n)
	for _, w := range ways {
		fmt.Printf("  %-48s until serving median %5.2f ms p90 %5.2f ms; CPU median %5.2f ms p90 %5.2f ms\n",
			w.name, stats.MS(w.wall.Median()), stats.MS(w.wall.P90()), stats.MS(w.cpu.Median()), stats.MS(w.cpu.P90()))
	}
	fmt.Printf("  one/two: until serving %.2f, CPU %.2f\n", stats.Ratio(ways[1].wall, ways[0].wall), stats.Ratio(ways[1].cpu, ways[0].cpu))
	return nil
}

// selfCPU is this process's CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
