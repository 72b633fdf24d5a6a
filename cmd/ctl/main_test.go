package main

import (
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
