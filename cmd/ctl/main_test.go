package main

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestEveryCommandHasAnExample walks the tree: every command a user can
// run shows an example in its help.
func TestEveryCommandHasAnExample(t *testing.T) {
	var walk func(cmd *cobra.Command)
	walk = func(cmd *cobra.Command) {
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
		if cmd.Hidden || !cmd.Runnable() || cmd.HasSubCommands() {
			return
		}
		if strings.TrimSpace(cmd.Example) == "" {
			t.Errorf("%s: no Example", cmd.CommandPath())
		}
	}
	walk(rootCommand())
}

// TestTopCommands holds topCommands to the commands their builds return,
// so that routing by name and alias sees what the whole tree would.
func TestTopCommands(t *testing.T) {
	var g globals
	for _, tc := range topCommands {
		cmd := tc.build(&g)
		if cmd.Name() != tc.name || !slices.Equal(cmd.Aliases, tc.aliases) {
			t.Errorf("topCommands: %s %q, but the command is %s %q", tc.name, tc.aliases, cmd.Name(), cmd.Aliases)
		}
	}
}

// TestPartialTree: a call that names a command gets a root with that
// command alone, and every command's help, flags and usage errors are the
// same in it as in the whole tree.
func TestPartialTree(t *testing.T) {
	run := func(root *cobra.Command, args ...string) (string, error) {
		var out bytes.Buffer
		root.SetArgs(args)
		root.SetOut(&out)
		root.SetErr(&out)
		err := root.Execute()
		return out.String(), err
	}
	var paths [][]string
	var walk func(cmd *cobra.Command, path []string)
	walk = func(cmd *cobra.Command, path []string) {
		if len(path) > 0 {
			paths = append(paths, path)
		}
		for _, sub := range cmd.Commands() {
			walk(sub, append(slices.Clip(path), sub.Name()))
		}
	}
	walk(rootCommand(), nil)
	for _, path := range paths {
		for _, extra := range [][]string{{"--help"}, {"--no-such-flag"}} {
			args := append(slices.Clip(path), extra...)
			want, wantErr := run(rootCommand(), args...)
			root := rootCommandFor(args)
			if top := path[0]; top != "completion" && len(root.Commands()) != 1 {
				t.Errorf("berthctl %s: %d commands below the root, want 1", strings.Join(args, " "), len(root.Commands()))
			}
			got, gotErr := run(root, args...)
			if got != want || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
				t.Errorf("berthctl %s: partial tree says %q (%v), the whole tree %q (%v)", strings.Join(args, " "), got, gotErr, want, wantErr)
			}
		}
	}
	// Aliases and the root's flags before the command route too.
	for _, args := range [][]string{
		{"c", "ls", "--help"},
		{"-n", "x", "--address=/x", "tasks", "ls", "--help"},
		{"--timeout", "1s", "--debug", "run", "--help"},
	} {
		if root := rootCommandFor(args); len(root.Commands()) != 1 {
			t.Errorf("berthctl %s: %d commands below the root, want 1", strings.Join(args, " "), len(root.Commands()))
		}
	}
	for _, args := range [][]string{nil, {"--help"}, {"help", "run"}, {"contaners", "ls"}, {"__complete", "run", ""}, {"completion", "bash"}} {
		if root := rootCommandFor(args); len(root.Commands()) != len(topCommands)+1 {
			t.Errorf("berthctl %s: %d commands below the root, want the whole tree", strings.Join(args, " "), len(root.Commands()))
		}
	}
}
