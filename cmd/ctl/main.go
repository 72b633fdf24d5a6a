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
	root := rootCommandFor(os.Args[1:])
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

// topCommand is a command below the root: its name and aliases, so that
// a call can be routed to it before it is built, how to build it, and
// what to start doing meanwhile (warm, which may be nil; it gets the
// arguments).
type topCommand struct {
	name    string
	aliases []string
	build   func(g *globals) *cobra.Command
	warm    func(args []string)
}

// topCommands are the root's commands but completion (which needs the
// whole tree), in the order of the full tree. TestTopCommands holds the
// names and aliases to what each build returns.
var topCommands = []topCommand{
	{"version", nil, versionCommand, nil},
	{"namespaces", []string{"namespace", "ns"}, namespacesCommand, nil},
	{"containers", []string{"container", "c"}, containersCommand, nil},
	{"tasks", []string{"task", "t"}, tasksCommand, nil},
	{"run", nil, runCommand, warmRun},
	{"events", nil, eventsCommand, nil},
	{"plugins", []string{"plugin"}, pluginsCommand, nil},
	{"images", []string{"image", "i"}, imagesCommand, nil},
	{"content", nil, contentCommand, nil},
	{"leases", []string{"lease"}, leasesCommand, nil},
	{"snapshots", []string{"snapshot", "sn"}, snapshotsCommand, nil},
	{"shim", nil, func(*globals) *cobra.Command { return shimCommand() }, nil},
	{"info", nil, infoCommand, nil},
	{"oci", nil, ociCommand, nil},
}

// rootCommandFor returns the command tree that runs args (os.Args[1:]).
// When args name one of topCommands, the root holds that command alone:
// building the whole tree (every command's flags, completions and
// usage-error wrappers) took 5-6 % of berthctl's CPU time in a `run --rm`,
// on the critical path of every call. A command's help, its flags, its
// errors and its completions (__complete names no top command) are the
// same in either tree; anything else (no command, help, completion, a
// misspelt command that cobra suggests a name for) gets the whole tree.
func rootCommandFor(args []string) *cobra.Command {
	var g globals
	root := newRoot(&g)
	// Find strips the root's flags (pflag says which take a value) and
	// routes by name and alias, as Execute will; stubs stand in for the
	// commands meanwhile.
	for _, tc := range topCommands {
		root.AddCommand(&cobra.Command{Use: tc.name, Aliases: tc.aliases, Run: func(*cobra.Command, []string) {}})
	}
	found, _, err := root.Find(args)
	var pick *topCommand
	if err == nil && found != root {
		for i := range topCommands {
			if topCommands[i].name == found.Name() {
				pick = &topCommands[i]
			}
		}
	}
	root.ResetCommands()
	if pick == nil {
		return fullTree(root, &g)
	}
	if pick.warm != nil {
		go pick.warm(args)
	}
	root.AddCommand(pick.build(&g))
	return finish(root, &g)
}

// rootCommand returns the whole command tree.
func rootCommand() *cobra.Command {
	var g globals
	return fullTree(newRoot(&g), &g)
}

func newRoot(g *globals) *cobra.Command {
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
	root.CompletionOptions.DisableDefaultCmd = true // ours has an example and usage errors
	return root
}

func fullTree(root *cobra.Command, g *globals) *cobra.Command {
	for _, tc := range topCommands {
		root.AddCommand(tc.build(g))
	}
	root.AddCommand(completionCommand(root))
	return finish(root, g)
}

func finish(root *cobra.Command, g *globals) *cobra.Command {
	registerCompletions(root, g)
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
