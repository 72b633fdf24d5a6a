package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// missingExamples are the commands that still lack an example, in files
// whose owners are to add them; a command leaves this list when it gets
// one.
var missingExamples = []string{
	"snapshots commit", "snapshots info", "snapshots rm", "snapshots tree", "snapshots usage", // snapshots.go
}

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
		path := strings.TrimPrefix(cmd.CommandPath(), "berthctl ")
		known := slices.Contains(missingExamples, path)
		switch has := strings.TrimSpace(cmd.Example) != ""; {
		case !has && !known:
			t.Errorf("berthctl %s: no Example", path)
		case has && known:
			t.Logf("berthctl %s has an Example now: take it off missingExamples", path)
		}
	}
	walk(rootCommand())
}
