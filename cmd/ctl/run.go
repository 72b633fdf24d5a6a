package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/containerd/console"
	"github.com/spf13/cobra"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/internal/spantrace"
	"github.com/berthrt/berth/io/cio"
)

func runCommand(g *globals) *cobra.Command {
	var (
		cf         containerFlags
		imf        imageFlags
		rm         bool
		detach     bool
		stdin      bool
		logURI     string
		detachKeys string
	)
	cmd := &cobra.Command{
		Use:   "run [FLAGS] IMAGE ID [CMD...] | run --rootfs DIR [FLAGS] ID [CMD...]",
		Short: "create a container and run its task; in the foreground, exit with its exit code",
		Example: `  berthctl run --rm docker.io/library/busybox:latest demo echo hello
  berthctl run --rm --pull --read-only busybox ro ls /
  berthctl run --rm --rootfs /tmp/busybox demo echo hello
  berthctl run -t -i --rm --rootfs /tmp/busybox shell sh    # Ctrl-P Ctrl-Q detaches
  berthctl run -d --rootfs /tmp/busybox web httpd -f -p 8080`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if rm && detach {
				return usageError{fmt.Errorf("--rm and -d exclude each other: a detached task outlives berthctl")}
			}
			// A --rootfs container has no snapshot: its task mounts
			// nothing and its removal has no snapshot to remove, which
			// spares a lookup of the container each.
			specRootFS := cf.rootfs != ""
			o := taskOptions{tty: cf.tty, stdin: stdin, detach: detach, logURI: logURI, detachKeys: detachKeys, specRootFS: specRootFS, cleanupOnExit: rm}
			if err := o.check(); err != nil {
				return err
			}
			span := spantrace.Start("connect")
			c, ctx, err := g.connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			span.End()
			span = spantrace.Start("new container")
			ctr, err := newContainer(ctx, c, &cf, &imf, args)
			if err != nil {
				return err
			}
			span.End()
			code, err := runTask(ctx, ctr, o)
			if errors.Is(err, errDetached) {
				note := fmt.Sprintf(" (berthctl tasks attach %s)", ctr.ID())
				if rm {
					note += fmt.Sprintf("; --rm does not apply after a detach: the container stays (berthctl tasks rm -f %[1]s; berthctl containers rm %[1]s)", ctr.ID())
				}
				return detachedFrom(err, "task "+ctr.ID(), note)
			}
			if rm {
				defer spantrace.Start("delete container").End()
				cleanup := context.WithoutCancel(ctx)
				var opts []client.DeleteOpts
				if !specRootFS {
					opts = append(opts, client.WithSnapshotCleanup)
				}
				if derr := ctr.Delete(cleanup, opts...); derr != nil && err == nil {
					err = fmt.Errorf("remove container %s: %w", ctr.ID(), derr)
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
	imf.register(cmd)
	f := cmd.Flags()
	f.BoolVar(&rm, "rm", false, "remove the container when its task has exited (not after a detach with --detach-keys: the container then stays)")
	f.BoolVarP(&detach, "detach", "d", false, "start the task and return; `tasks attach` connects to its stdio later, or --log-uri sends its output to a file")
	f.BoolVarP(&stdin, "interactive", "i", false, "connect stdin")
	f.StringVar(&logURI, "log-uri", "", "append the task's output to this file (file:///path or /path) instead of showing it")
	registerDetachKeys(f, &detachKeys)
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
	detachKeys         string // --detach-keys
	specRootFS         bool   // the spec names a ready root folder: no snapshot
	cleanupOnExit      bool   // --rm: the task is deleted once it exited
}

// check refuses options that exclude each other, and bad detach keys.
func (o taskOptions) check() error {
	if _, err := parseDetachKeys(o.detachKeys); err != nil {
		return err
	}
	if o.logURI == "" {
		return nil
	}
	if o.tty || o.stdin {
		return usageError{fmt.Errorf("--log-uri with -t or -i: a task whose output goes to a file has no terminal or stdin")}
	}
	path := o.logURI
	if strings.Contains(path, "://") {
		if !strings.HasPrefix(path, cio.FilePrefix) {
			return usageError{fmt.Errorf("--log-uri %q: only file:// URIs (or an absolute path) are supported", o.logURI)}
		}
		path = strings.TrimPrefix(path, cio.FilePrefix)
	}
	if !filepath.IsAbs(path) {
		return usageError{fmt.Errorf("--log-uri %q: want file:///ABSOLUTE/PATH or /ABSOLUTE/PATH", o.logURI)}
	}
	return nil
}

// runTask creates and starts the task of ctr. In the foreground it relays
// stdio, forwards SIGINT and SIGTERM (or, with a terminal, the window
// size), waits for the exit, removes the task and returns the exit status.
func runTask(ctx context.Context, ctr client.Container, o taskOptions) (uint32, error) {
	if err := o.check(); err != nil {
		return 0, err
	}
	creator, detached := ioCreator(o)
	if o.detach && o.logURI == "" {
		creator = attachableFIFOs(o.tty, o.stdin)
	}
	var con console.Console
	if o.tty && !o.detach {
		var err error
		if con, err = rawTerminal(); err != nil {
			return 0, err
		}
		defer con.Reset()
	}
	// Created and started in one call: the shim keeps the exit until the
	// task is deleted, so the Wait below cannot miss it.
	span := spantrace.Start("new task")
	opts := []client.NewTaskOpts{client.WithTaskStart}
	if o.specRootFS {
		opts = append(opts, client.WithSpecRootFS)
	}
	if o.cleanupOnExit {
		// The container is released while the exit travels here, so
		// that the Delete that follows finds it done.
		opts = append(opts, client.WithTaskCleanupOnExit)
	}
	task, err := ctr.NewTask(ctx, creator, opts...)
	if err != nil {
		return 0, err
	}
	span.End()
	if o.detach {
		fmt.Println(task.Pid())
		return 0, nil
	}
	exitc, err := task.Wait(ctx)
	if err != nil {
		return 0, err
	}
	return untilDeleted(ctx, task, exitc, con, detached)
}

// supervise runs a created process in the foreground until it exits, then
// deletes it. When detached is closed first, it returns errDetached and
// leaves the process running, with its FIFOs for an attach.
func supervise(ctx context.Context, p client.Process, con console.Console, detached <-chan struct{}) (uint32, error) {
	cleanup := context.WithoutCancel(ctx)
	span := spantrace.Start("wait")
	exitc, err := p.Wait(ctx)
	if err != nil {
		p.Delete(cleanup)
		return 0, err
	}
	span.End()
	span = spantrace.Start("start")
	if err := p.Start(ctx); err != nil {
		p.Delete(cleanup)
		return 0, err
	}
	span.End()
	return untilDeleted(ctx, p, exitc, con, detached)
}

// untilDeleted relays to a running process until its exit arrives on
// exitc, waits for its output, and deletes it (see supervise).
func untilDeleted(ctx context.Context, p client.Process, exitc <-chan client.ExitStatus, con console.Console, detached <-chan struct{}) (uint32, error) {
	cleanup := context.WithoutCancel(ctx)
	span := spantrace.Start("until exit")
	code, err := relayUntilExit(ctx, p, exitc, con, detached)
	if err != nil {
		return 0, err
	}
	span.End()
	span = spantrace.Start("io wait")
	p.IO().Wait()
	span.End()
	defer spantrace.Start("delete task").End()
	if _, err := p.Delete(cleanup); err != nil {
		return code, err
	}
	return code, nil
}

// relayUntilExit relays signals (or the terminal's size) to p until its
// exit arrives on exitc, and returns the exit code; errDetached when
// detached is closed first.
func relayUntilExit(ctx context.Context, p client.Process, exitc <-chan client.ExitStatus, con console.Console, detached <-chan struct{}) (uint32, error) {
	stop := relaySignals(ctx, p, con)
	defer stop()
	select {
	case st := <-exitc:
		code, _, err := st.Result()
		return code, err
	case <-detached:
		return 0, errDetached
	}
}

// rawTerminal puts the terminal berthctl runs on in raw mode; the caller
// resets it. Unlike console.Current, which panics, it fails when none of
// stdin, stdout and stderr is a terminal.
func rawTerminal() (console.Console, error) {
	for _, f := range []*os.File{os.Stdin, os.Stdout, os.Stderr} {
		con, err := console.ConsoleFromFile(f)
		if err != nil {
			continue
		}
		if err := con.SetRaw(); err != nil {
			return nil, fmt.Errorf("terminal: %w", err)
		}
		return con, nil
	}
	return nil, fmt.Errorf("-t needs a terminal: none of stdin, stdout and stderr is one")
}

// attachableFIFOs is the Creator of a detached task: FIFOs that outlive
// berthctl, so that `tasks attach` can connect to the task later (the
// shim drops output while nobody is attached). Stdin gets a FIFO only with
// -i: without one, the process reads /dev/null rather than block. `tasks
// rm` removes the FIFOs with the task.
func attachableFIFOs(tty, stdin bool) cio.Creator {
	return func(id string) (cio.IO, error) {
		set, err := cio.NewFIFOSetInDir(cio.DefaultFIFODir, id, tty)
		if err != nil {
			return nil, err
		}
		if !stdin {
			if err := os.Remove(set.Stdin); err != nil {
				return nil, errors.Join(err, set.Close())
			}
			set.Stdin = ""
		}
		return fifosIO{set}, nil
	}
}

// fifosIO is an IO that holds FIFOs without copying anything: the FIFOs of
// a detached task, or of a task being removed. Close removes them.
type fifosIO struct{ set *cio.FIFOSet }

func (f fifosIO) Config() cio.Config { return f.set.Config }
func (f fifosIO) Cancel()            {}
func (f fifosIO) Wait()              {}
func (f fifosIO) Close() error       { return f.set.Close() }

// keepFIFOs is the Attach of a command that removes a task: its IO removes
// the task's FIFOs when the task is deleted.
func keepFIFOs(set *cio.FIFOSet) (cio.IO, error) { return fifosIO{set}, nil }

// ioCreator returns the Creator of a process's stdio, and with -t -i in the
// foreground a channel closed when the user types the detach keys (nil
// otherwise).
func ioCreator(o taskOptions) (cio.Creator, <-chan struct{}) {
	switch {
	case o.logURI != "":
		return cio.LogFile(strings.TrimPrefix(o.logURI, cio.FilePrefix)), nil
	case o.detach:
		return cio.NullIO, nil
	}
	var (
		opts     []cio.Opt
		detached <-chan struct{}
	)
	if o.stdin {
		keys, _ := parseDetachKeys(o.detachKeys) // checked by check
		var stdin io.Reader
		stdin, detached = terminalStdin(o.tty, keys)
		opts = append(opts, cio.WithStreams(stdin, os.Stdout, os.Stderr))
	} else {
		opts = append(opts, cio.WithStreams(nil, os.Stdout, os.Stderr))
	}
	if o.tty {
		opts = append(opts, cio.WithTerminal)
	}
	return cio.NewCreator(opts...), detached
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
