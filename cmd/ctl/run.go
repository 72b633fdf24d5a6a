package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/containerd/console"
	"github.com/spf13/cobra"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/io/cio"
)

func runCommand(g *globals) *cobra.Command {
	var (
		cf     containerFlags
		rm     bool
		detach bool
		stdin  bool
		logURI string
	)
	cmd := &cobra.Command{
		Use:   "run --rootfs DIR [FLAGS] ID [CMD...]",
		Short: "create a container and run its task; in the foreground, exit with its exit code",
		Example: `  berthctl run --rm --rootfs /tmp/busybox demo echo hello
  berthctl run -t -i --rm --rootfs /tmp/busybox shell sh
  berthctl run -d --rootfs /tmp/busybox web httpd -f -p 8080`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if rm && detach {
				return usageError{fmt.Errorf("--rm and -d exclude each other: a detached task outlives berthctl")}
			}
			opts, err := cf.containerOpts(args[1:])
			if err != nil {
				return err
			}
			c, ctx, err := g.connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctr, err := c.NewContainer(ctx, args[0], opts...)
			if err != nil {
				return err
			}
			code, err := runTask(ctx, ctr, taskOptions{tty: cf.tty, stdin: stdin, detach: detach, logURI: logURI})
			if rm {
				cleanup := context.WithoutCancel(ctx)
				if derr := ctr.Delete(cleanup); derr != nil && err == nil {
					err = fmt.Errorf("remove container %s: %w", args[0], derr)
				}
			}
			if err != nil {
				return err
			}
			if detach {
				return nil
			}
			return exitCode(code)
		},
	}
	cf.register(cmd)
	f := cmd.Flags()
	f.BoolVar(&rm, "rm", false, "remove the container when its task has exited")
	f.BoolVarP(&detach, "detach", "d", false, "start the task and return; its output is discarded unless --log-uri is given")
	f.BoolVarP(&stdin, "interactive", "i", false, "connect stdin")
	f.StringVar(&logURI, "log-uri", "", "with -d: append the task's output to this file (file:///path or /path)")
	return cmd
}

func exitCode(code uint32) error {
	if code == 0 {
		return nil
	}
	return exitError{int(code)}
}

type taskOptions struct {
	tty, stdin, detach bool
	logURI             string
}

// runTask creates and starts the task of ctr. In the foreground it relays
// stdio, forwards SIGINT and SIGTERM (or, with a terminal, the window
// size), waits for the exit, removes the task and returns the exit status.
func runTask(ctx context.Context, ctr client.Container, o taskOptions) (uint32, error) {
	creator := ioCreator(o)
	var con console.Console
	if o.tty && !o.detach {
		con = console.Current()
		if err := con.SetRaw(); err != nil {
			return 0, fmt.Errorf("terminal: %w", err)
		}
		defer con.Reset()
	}
	task, err := ctr.NewTask(ctx, creator)
	if err != nil {
		return 0, err
	}
	if o.detach {
		if err := task.Start(ctx); err != nil {
			task.Delete(context.WithoutCancel(ctx))
			return 0, err
		}
		fmt.Println(task.Pid())
		return 0, nil
	}
	return supervise(ctx, task, con)
}

// supervise runs a created process in the foreground until it exits, then
// deletes it.
func supervise(ctx context.Context, p client.Process, con console.Console) (uint32, error) {
	cleanup := context.WithoutCancel(ctx)
	exitc, err := p.Wait(ctx)
	if err != nil {
		p.Delete(cleanup)
		return 0, err
	}
	if err := p.Start(ctx); err != nil {
		p.Delete(cleanup)
		return 0, err
	}
	stop := relaySignals(ctx, p, con)
	defer stop()
	st := <-exitc
	code, _, err := st.Result()
	if err != nil {
		return 0, err
	}
	p.IO().Wait()
	if _, err := p.Delete(cleanup); err != nil {
		return code, err
	}
	return code, nil
}

func ioCreator(o taskOptions) cio.Creator {
	switch {
	case o.detach && o.logURI != "":
		path := o.logURI
		if len(path) > 7 && path[:7] == "file://" {
			path = path[7:]
		}
		return cio.LogFile(path)
	case o.detach:
		return cio.NullIO
	}
	var opts []cio.Opt
	if o.stdin {
		opts = append(opts, cio.WithStdio)
	} else {
		opts = append(opts, cio.WithStreams(nil, os.Stdout, os.Stderr))
	}
	if o.tty {
		opts = append(opts, cio.WithTerminal)
	}
	return cio.NewCreator(opts...)
}

// relaySignals forwards SIGINT and SIGTERM to p, or, with a terminal,
// keeps p's window size that of the terminal (Ctrl-C then reaches p
// through the terminal itself).
func relaySignals(ctx context.Context, p client.Process, con console.Console) (stop func()) {
	sigc := make(chan os.Signal, 8)
	if con != nil {
		signal.Notify(sigc, syscall.SIGWINCH)
		sigc <- syscall.SIGWINCH // the initial size
	} else {
		signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case s := <-sigc:
				if s == syscall.SIGWINCH {
					if size, err := con.Size(); err == nil {
						p.Resize(ctx, uint32(size.Width), uint32(size.Height))
					}
					continue
				}
				p.Kill(ctx, s.(syscall.Signal))
			}
		}
	}()
	return func() {
		signal.Stop(sigc)
		close(done)
	}
}
