// Command berthctl is berth's command line client: it drives berthd through
// the Go client library.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/berthrt/berth/internal/spantrace"
)

// Exit codes: a failure is 1, a usage error 2; a foreground container's
// own exit code is passed through.
const (
	exitFailure = 1
	exitUsage   = 2
)

// exitError carries a container's exit code out of a command.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// usageError marks an error in how the command was called.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func main() {
	spantrace.Mark("main")
	root := rootCommand()
	err := root.Execute()
	spantrace.Mark("done")
	if err == nil {
		return
	}
	var ee exitError
	if errors.As(err, &ee) {
		os.Exit(ee.code)
	}
	fmt.Fprintln(os.Stderr, "berthctl:", err)
	var ue usageError
	if errors.As(err, &ue) {
		os.Exit(exitUsage)
	}
	os.Exit(exitFailure)
}

func rootCommand() *cobra.Command {
	var g globals
	root := &cobra.Command{
		Use:   "berthctl",
		Short: "berthctl drives berth: namespaces, containers, tasks and events",
		Example: `  berthctl run --rm --rootfs /tmp/busybox demo echo hello
  berthctl -n ci containers ls --format json
  berthctl tasks kill -s TERM web`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	g.register(root)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(
		versionCommand(&g),
		namespacesCommand(&g),
		containersCommand(&g),
		tasksCommand(&g),
		runCommand(&g),
		eventsCommand(&g),
		pluginsCommand(&g),
		imagesCommand(&g), contentCommand(&g), leasesCommand(&g), snapshotsCommand(&g),
		shimCommand(),
		infoCommand(&g), ociCommand(&g),
	)
	root.CompletionOptions.DisableDefaultCmd = true // ours has an example and usage errors
	root.AddCommand(completionCommand(root))
	registerCompletions(root, &g)
	usageErrors(root)
	return root
}

// usageErrors walks the tree from cmd: an argument error (missing or extra
// arguments) becomes a usage error, and a command group given an unknown
// subcommand fails with one instead of printing help and exiting 0, as
// cobra does for a group without Run. A group called alone prints its
// help.
func usageErrors(cmd *cobra.Command) {
	if cmd.HasSubCommands() && !cmd.Runnable() {
		cmd.Args = func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown command %q for %q", args[0], c.CommandPath())
			}
			return nil
		}
		cmd.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
	}
	if check := cmd.Args; check != nil {
		cmd.Args = func(c *cobra.Command, args []string) error {
			if err := check(c, args); err != nil {
				return usageError{err}
			}
			return nil
		}
	}
	for _, sub := range cmd.Commands() {
		usageErrors(sub)
	}
}
