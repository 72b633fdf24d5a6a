// Command ctlbench times berthctl's own process: `berthctl run --rm
// --rootfs DIR ID /bin/true` against a fake daemon in this process that
// answers each call at once (Containers.Create, Tasks.Create with its
// FIFOs opened and closed, Wait with exit 0, Tasks.Delete,
// Containers.Delete), so that what is left of a run is berthctl's exec,
// runtime and package init, command line, connect, spec, messages, FIFOs
// and exit. Builds given as NAME=BIN run interleaved, the first of each
// round rotating; the report gives medians of wall time (fork to exit),
// CPU time (user+system) and minor page faults, and each build's ratio
// to the first. See bench/README.md ("berthctl's own process").
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/timestamppb"

	containersv1 "github.com/berthrt/berth/proto/containers/v1"
	tasksv1 "github.com/berthrt/berth/proto/tasks/v1"
)

func main() {
	n := flag.Int("n", 50, "measured rounds")
	warmup := flag.Int("warmup", 3, "rounds not measured")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: ctlbench [-n N] NAME=BERTHCTL...\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	var builds []build
	for _, a := range flag.Args() {
		name, bin, ok := strings.Cut(a, "=")
		if !ok {
			name, bin = filepath.Base(filepath.Dir(a)), a
		}
		builds = append(builds, build{name: name, bin: bin})
	}
	if err := run(builds, *n, *warmup); err != nil {
		fmt.Fprintln(os.Stderr, "ctlbench:", err)
		os.Exit(1)
	}
}

type build struct {
	name, bin         string
	wall, cpu, faults []float64
}

func run(builds []build, n, warmup int) error {
	dir, err := os.MkdirTemp("", "ctlbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return err
	}
	address := filepath.Join(dir, "berth.sock")
	srv, err := ttrpc.NewServer()
	if err != nil {
		return err
	}
	containersv1.RegisterContainersService(srv, fakeContainers{})
	tasksv1.RegisterTasksService(srv, fakeTasks{})
	l, err := net.Listen("unix", address)
	if err != nil {
		return err
	}
	go srv.Serve(context.Background(), l)
	defer srv.Close()

	for round := range warmup + n {
		for i := range builds {
			b := &builds[(round+i)%len(builds)]
			id := fmt.Sprintf("c%d-%d", round, i)
			cmd := exec.Command(b.bin, "--address", address, "--namespace", "ctlbench", "run", "--rm", "--rootfs", rootfs, id, "/bin/true")
			cmd.Env = append(os.Environ(), "BERTH_TRACE=")
			cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
			start := time.Now()
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("%s: %v", b.name, err)
			}
			wall := time.Since(start)
			if round < warmup {
				continue
			}
			ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
			b.wall = append(b.wall, ms(wall))
			b.cpu = append(b.cpu, ms(time.Duration(ru.Utime.Nano()+ru.Stime.Nano())))
			b.faults = append(b.faults, float64(ru.Minflt))
		}
	}
	report(builds, n)
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(s []float64) float64 {
	s = slices.Clone(s)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func report(builds []build, n int) {
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("berthctl run --rm --rootfs against a fake daemon, %d interleaved rounds, load %s\n", n, strings.Join(strings.Fields(string(load))[:3], " "))
	fmt.Printf("%-12s %10s %10s %10s   %s\n", "build", "wall ms", "CPU ms", "faults", "ratio to "+builds[0].name+" (wall, CPU, faults)")
	w0, c0, f0 := median(builds[0].wall), median(builds[0].cpu), median(builds[0].faults)
	for _, b := range builds {
		w, c, f := median(b.wall), median(b.cpu), median(b.faults)
		fmt.Printf("%-12s %10.2f %10.2f %10.0f   %.2f %.2f %.2f\n", b.name, w, c, f, w/w0, c/c0, f/f0)
	}
}

// fakeContainers answers Create and Delete; the other methods are not
// called by a run (the embedded nil interface would panic).
type fakeContainers struct{ containersv1.ContainersService }

func (fakeContainers) Create(_ context.Context, r *containersv1.CreateContainerRequest) (*containersv1.CreateContainerResponse, error) {
	return &containersv1.CreateContainerResponse{Container: r.GetContainer()}, nil
}

func (fakeContainers) Delete(_ context.Context, r *containersv1.DeleteContainerRequest) (*containersv1.DeleteContainerResponse, error) {
	return &containersv1.DeleteContainerResponse{SnapshotRemoved: r.GetRemoveSnapshot()}, nil
}

// fakeTasks creates a task that has already exited: its output FIFOs are
// opened for writing and closed, which is the end of its output.
type fakeTasks struct{ tasksv1.TasksService }

func (fakeTasks) Create(_ context.Context, r *tasksv1.CreateTaskRequest) (*tasksv1.CreateTaskResponse, error) {
	for _, p := range []string{r.GetStdio().GetStdout(), r.GetStdio().GetStderr()} {
		if p == "" {
			continue
		}
		// O_RDWR opens a FIFO without waiting for its reader.
		fd, err := unix.Open(p, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", p, err)
		}
		unix.Close(fd)
	}
	return &tasksv1.CreateTaskResponse{ContainerId: r.GetContainerId(), Pid: 1}, nil
}

func (fakeTasks) Wait(context.Context, *tasksv1.WaitRequest) (*tasksv1.WaitResponse, error) {
	return &tasksv1.WaitResponse{ExitedAt: timestamppb.Now()}, nil
}

func (fakeTasks) Delete(_ context.Context, r *tasksv1.DeleteTaskRequest) (*tasksv1.DeleteResponse, error) {
	return &tasksv1.DeleteResponse{Id: r.GetContainerId(), ExitedAt: timestamppb.Now()}, nil
}
