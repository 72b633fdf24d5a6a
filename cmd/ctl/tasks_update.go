package main

import (
	"context"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/oci"
)

// resourceFlags are the limits `tasks update` changes; unset flags leave
// a limit as it is.
type resourceFlags struct {
	memoryLimit uint64
	cpus        float64
	pidsLimit   int64
}

func (f *resourceFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.Uint64Var(&f.memoryLimit, "memory-limit", 0, "memory limit in bytes")
	fl.Float64Var(&f.cpus, "cpus", 0, "CPU quota in CPUs (e.g. 0.5)")
	fl.Int64Var(&f.pidsLimit, "pids-limit", 0, "largest number of processes and threads")
}

// resources returns the limits the flags set changed, built by the oci
// options that check them; a flag given with a bad value is a usage error.
func (f *resourceFlags) resources(cmd *cobra.Command) (*specs.LinuxResources, error) {
	var opts []oci.SpecOpts
	if cmd.Flags().Changed("memory-limit") {
		opts = append(opts, oci.WithMemoryLimit(f.memoryLimit))
	}
	if cmd.Flags().Changed("cpus") {
		opts = append(opts, oci.WithCPUs(f.cpus))
	}
	if cmd.Flags().Changed("pids-limit") {
		opts = append(opts, oci.WithPidsLimit(f.pidsLimit))
	}
	if len(opts) == 0 {
		return nil, usageError{fmt.Errorf("nothing to update: give --memory-limit, --cpus or --pids-limit")}
	}
	s := &specs.Spec{}
	for _, o := range opts {
		if err := o(cmd.Context(), s); err != nil {
			return nil, usageError{err}
		}
	}
	return s.Linux.Resources, nil
}

func taskUpdateCommand(g *globals) *cobra.Command {
	var f resourceFlags
	cmd := &cobra.Command{
		Use:     "update [--memory-limit BYTES] [--cpus N] [--pids-limit N] ID",
		Short:   "change the resource limits of a running task",
		Example: "  berthctl tasks update --memory-limit 268435456 --cpus 1.5 web",
		Args:    cobra.ExactArgs(1),
		RunE: g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
			r, err := f.resources(cmd)
			if err != nil {
				return err
			}
			task, err := loadTask(ctx, c, args[0])
			if err != nil {
				return err
			}
			if err := task.Update(ctx, client.WithResources(r)); err != nil {
				return fmt.Errorf("task %q: update: %w", args[0], err)
			}
			return nil
		}),
	}
	f.register(cmd)
	return cmd
}
