package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/console"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/io/cio"
	"github.com/berthrt/berth/oci"
	tasksv1 "github.com/berthrt/berth/proto/tasks/v1"
)

func tasksCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "tasks", Aliases: []string{"task", "t"}, Short: "manage tasks, the running instances of containers"}
	cmd.AddCommand(taskStartCommand(g), taskListCommand(g), taskKillCommand(g), taskExecCommand(g), taskAttachCommand(g),
		taskSimpleCommand(g, "pause", "freeze every process of a task", func(c *client.Client, cmd *cobra.Command, id string) error {
			_, err := c.TaskService().Pause(cmd.Context(), &tasksv1.PauseTaskRequest{ContainerId: id})
			return err
		}),
		taskSimpleCommand(g, "resume", "thaw a paused task", func(c *client.Client, cmd *cobra.Command, id string) error {
			_, err := c.TaskService().Resume(cmd.Context(), &tasksv1.ResumeTaskRequest{ContainerId: id})
			return err
		}),
		taskSimpleCommand(g, "wait", "wait for a task to exit and print its exit status", func(c *client.Client, cmd *cobra.Command, id string) error {
			resp, err := c.TaskService().Wait(cmd.Context(), &tasksv1.WaitRequest{ContainerId: id})
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), resp.ExitStatus)
			return nil
		}),
		taskPsCommand(g), taskMetricsCommand(g), taskUpdateCommand(g),
		taskRemoveCommand(g),
	)
	return cmd
}

// taskSimpleCommand is a command that takes one task id and makes one call.
func taskSimpleCommand(g *globals, name, short string, fn func(*client.Client, *cobra.Command, string) error) *cobra.Command {
	return &cobra.Command{
		Use:     name + " ID",
		Short:   short,
		Example: "  berthctl tasks " + name + " web",
		Args:    cobra.ExactArgs(1),
		RunE: g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
			cmd.SetContext(ctx)
			if err := fn(c, cmd, args[0]); err != nil {
				return fmt.Errorf("task %q: %w", args[0], err)
			}
			return nil
		}),
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func taskStartCommand(g *globals) *cobra.Command {
	var o taskOptions
	cmd := &cobra.Command{
		Use:     "start [-d] [-t] [-i] ID",
		Short:   "start the task of a container; in the foreground, exit with its exit code",
		Example: "  berthctl tasks start -d web",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, err := g.connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctr, err := c.LoadContainer(ctx, args[0])
			if err != nil {
				return err
			}
			spec, err := ctr.Spec(ctx)
			if err != nil {
				return err
			}
			o.tty = spec.Process != nil && spec.Process.Terminal
			code, err := runTask(ctx, ctr, o)
			if err != nil || o.detach {
				return detachedFrom(err, "task "+args[0], fmt.Sprintf(" (berthctl tasks attach %s)", args[0]))
			}
			return exitCode(code)
		},
	}
	cmd.Flags().BoolVarP(&o.detach, "detach", "d", false, "start the task and return")
	cmd.Flags().BoolVarP(&o.stdin, "interactive", "i", false, "connect stdin")
	cmd.Flags().StringVar(&o.logURI, "log-uri", "", "append the task's output to this file (file:///path or /path) instead of showing it")
	registerDetachKeys(cmd.Flags(), &o.detachKeys)
	return cmd
}

func taskKillCommand(g *globals) *cobra.Command {
	var (
		sig    string
		all    bool
		execID string
	)
	cmd := &cobra.Command{
		Use:     "kill [-s SIGNAL] [--all] [--exec-id EID] ID",
		Short:   "signal a task (SIGTERM by default)",
		Example: "  berthctl tasks kill -s KILL --all web",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := parseSignal(sig)
			if err != nil {
				return err
			}
			return g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
				_, err := c.TaskService().Kill(ctx, &tasksv1.KillRequest{ContainerId: args[0], ExecId: execID, Signal: uint32(s), All: all})
				return err
			})(cmd, args)
		},
	}
	cmd.Flags().StringVarP(&sig, "signal", "s", "SIGTERM", "signal name (TERM, SIGKILL) or number")
	cmd.Flags().BoolVar(&all, "all", false, "signal every process of the task")
	cmd.Flags().StringVar(&execID, "exec-id", "", "signal this exec process instead of the init process")
	return cmd
}

// removeTask deletes the task of container id and the FIFOs a detached
// run left for `tasks attach`.
func removeTask(ctx context.Context, c *client.Client, id string) (*client.ExitStatus, error) {
	ctr, err := c.LoadContainer(ctx, id)
	if err != nil {
		return nil, err
	}
	task, err := ctr.Task(ctx, keepFIFOs)
	if err != nil {
		return nil, err
	}
	return task.Delete(ctx)
}

// parseSignal accepts "TERM", "SIGTERM", "term" or "15".
func parseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, usageError{fmt.Errorf("signal %d out of range", n)}
		}
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, usageError{fmt.Errorf("unknown signal %q", s)}
}

func taskExecCommand(g *globals) *cobra.Command {
	var (
		execID string
		tty    bool
		stdin  bool
		detach bool
		cwd    string
		env    []string
		user   string
		keys   string
	)
	cmd := &cobra.Command{
		Use:     "exec --exec-id EID [-t] [-i] [-d] ID CMD...",
		Short:   "run an additional process in a running task",
		Example: "  berthctl tasks exec --exec-id sh1 -t -i web sh",
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if execID == "" {
				return usageError{fmt.Errorf("--exec-id is required")}
			}
			if err := checkUser(user); err != nil {
				return err
			}
			o := taskOptions{tty: tty, stdin: stdin, detach: detach, detachKeys: keys}
			if err := o.check(); err != nil {
				return err
			}
			c, ctx, err := g.connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctr, err := c.LoadContainer(ctx, args[0])
			if err != nil {
				return err
			}
			spec, err := ctr.Spec(ctx)
			if err != nil {
				return err
			}
			task, err := ctr.Task(ctx, nil)
			if err != nil {
				return err
			}
			p := specs.Process{Args: args[1:], Terminal: tty, Cwd: "/"}
			if spec.Process != nil {
				p = *spec.Process
				p.Args, p.Terminal = args[1:], tty
			}
			if cwd != "" {
				p.Cwd = cwd
			}
			p.Env = append(p.Env, env...)
			if user != "" {
				// Names resolve in the running container's root.
				u, err := oci.ResolveUser(fmt.Sprintf("/proc/%d/root", task.Pid()), user)
				if err != nil {
					return fmt.Errorf("task %q: %w", args[0], err)
				}
				p.User.UID, p.User.GID, p.User.AdditionalGids = u.UID, u.GID, u.AdditionalGids
			}
			var con console.Console
			if tty && !detach {
				if con, err = rawTerminal(); err != nil {
					return err
				}
				defer con.Reset()
			}
			creator, detached := ioCreator(o)
			proc, err := task.Exec(ctx, execID, &p, creator)
			if err != nil {
				return err
			}
			if detach {
				return proc.Start(ctx)
			}
			code, err := supervise(ctx, proc, con, detached)
			if err != nil {
				return detachedFrom(err, fmt.Sprintf("exec %s of task %s", execID, args[0]),
					fmt.Sprintf(" (berthctl tasks attach --exec-id %s %s)", execID, args[0]))
			}
			return exitCode(code)
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false)
	f.StringVar(&execID, "exec-id", "", "id of the new process (required)")
	f.BoolVarP(&tty, "tty", "t", false, "allocate a terminal")
	f.BoolVarP(&stdin, "interactive", "i", false, "connect stdin")
	f.BoolVarP(&detach, "detach", "d", false, "start the process and return")
	f.StringVar(&cwd, "cwd", "", "working directory")
	f.StringArrayVar(&env, "env", nil, "environment variable KEY=VALUE (repeatable)")
	f.StringVarP(&user, "user", "u", "", "USER[:GROUP] to run as, names or numbers (names from the container's /etc/passwd and /etc/group)")
	registerDetachKeys(f, &keys)
	return cmd
}

func taskAttachCommand(g *globals) *cobra.Command {
	var execID, keys string
	cmd := &cobra.Command{
		Use:   "attach [--exec-id EID] [--detach-keys KEYS] ID",
		Short: "connect to the stdio of a running task (or exec process) started with FIFOs, and wait for its exit",
		Long: `Connects to the stdio of a running task, or with --exec-id of an exec process,
and waits for its exit, whose code is berthctl's. With a terminal, the detach
keys (Ctrl-P Ctrl-Q unless --detach-keys) end berthctl and leave the process
running; so does killing berthctl. The end of a stdin that is no terminal
(a pipe, /dev/null) lets go of the process's stdin without closing it. An
exec process attached to is removed when it has exited.`,
		Example: "  berthctl tasks attach web\n  berthctl tasks attach --exec-id sh1 --detach-keys ctrl-a,d web",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			detachKeys, err := parseDetachKeys(keys)
			if err != nil {
				return err
			}
			c, ctx, err := g.connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctr, err := c.LoadContainer(ctx, args[0])
			if err != nil {
				return err
			}
			var detached <-chan struct{}
			attach := func(set *cio.FIFOSet) (cio.IO, error) {
				var stdin io.Reader
				stdin, detached = terminalStdin(set.Terminal, detachKeys)
				return cio.NewAttach(cio.WithStreams(stdin, os.Stdout, os.Stderr))(set)
			}
			p, err := loadProcess(ctx, ctr, execID, attach)
			if err != nil {
				return err
			}
			var con console.Console
			if p.IO() != nil && p.IO().Config().Terminal {
				if con, err = rawTerminal(); err != nil {
					return err
				}
				defer con.Reset()
			}
			code, err := attachTo(ctx, p, con, detached)
			if errors.Is(err, errDetached) && con != nil {
				con.Reset() // before the word to the user
			}
			if err != nil {
				what, how := "task "+args[0], ""
				if execID != "" {
					what, how = fmt.Sprintf("exec %s of task %s", execID, args[0]), "--exec-id "+execID+" "
				}
				return detachedFrom(err, what, fmt.Sprintf(" (berthctl tasks attach %s%s)", how, args[0]))
			}
			if execID != "" {
				// Nobody else removes it: a foreground exec would have.
				if _, err := p.Delete(context.WithoutCancel(ctx)); err != nil {
					return err
				}
			}
			return exitCode(code)
		},
	}
	cmd.Flags().StringVar(&execID, "exec-id", "", "attach to this exec process instead of the init process")
	registerDetachKeys(cmd.Flags(), &keys)
	return cmd
}

// loadProcess returns the task of ctr, or its exec process execID, with
// its FIFOs attached.
func loadProcess(ctx context.Context, ctr client.Container, execID string, attach cio.Attach) (client.Process, error) {
	if execID == "" {
		return ctr.Task(ctx, attach)
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return nil, err
	}
	return task.LoadProcess(ctx, execID, attach)
}

// attachTo relays to p until it exits (its exit code) or detached is
// closed (errDetached), then lets its output drain.
func attachTo(ctx context.Context, p client.Process, con console.Console, detached <-chan struct{}) (uint32, error) {
	exitc, err := p.Wait(ctx)
	if err != nil {
		return 0, err
	}
	code, err := relayUntilExit(ctx, p, exitc, con, detached)
	if err != nil {
		return 0, err
	}
	// The shim reports the exit once the output is in the FIFOs, so Cancel
	// loses nothing. Without it, Wait would hang on a FIFO the shim never
	// opened while attached (say, stderr of a task that wrote nothing
	// there).
	if pio := p.IO(); pio != nil {
		pio.Cancel()
		pio.Wait()
	}
	return code, nil
}

func taskRemoveCommand(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm [-f] ID...",
		Aliases: []string{"remove", "delete", "del"},
		Short:   "remove stopped tasks (with -f, kill running ones first)",
		Example: "  berthctl tasks rm -f web",
		Args:    cobra.MinimumNArgs(1),
		RunE: g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
			var failed error
			for _, id := range args {
				if force {
					if _, err := c.TaskService().Kill(ctx, &tasksv1.KillRequest{ContainerId: id, Signal: uint32(syscall.SIGKILL), All: true}); err == nil {
						c.TaskService().Wait(ctx, &tasksv1.WaitRequest{ContainerId: id})
					}
				}
				st, err := removeTask(ctx, c, id)
				if err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), "berthctl:", err)
					failed = fmt.Errorf("some tasks were not removed")
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s\t%d\n", id, st.ExitCode())
			}
			return failed
		}),
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill the task first if it runs")
	return cmd
}
