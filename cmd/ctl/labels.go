package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/berthrt/berth/client"
)

// labelFuncs read and patch the labels of one kind of object. update gets
// the labels to set and the field paths ("labels.<key>") to change, so a
// key in paths but not in set is removed.
type labelFuncs struct {
	get    func(ctx context.Context, c *client.Client, name string) (map[string]string, error)
	update func(ctx context.Context, c *client.Client, name string, set map[string]string, paths []string) (map[string]string, error)
}

// labelCommand is `KIND label NAME [KEY=VALUE...]`: with labels it sets
// them (KEY= removes one), without it prints them; either way it prints
// the labels the object has afterwards.
func labelCommand(g *globals, kind, example string, fn labelFuncs) *cobra.Command {
	return &cobra.Command{
		Use:     "label NAME [KEY=VALUE...]",
		Short:   "set labels of a " + kind + " (KEY= removes one); without labels, print them",
		Example: example,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			labels, err := parseLabels(args[1:])
			if err != nil {
				return err
			}
			set := map[string]string{}
			var paths []string
			for k, v := range labels {
				paths = append(paths, "labels."+k)
				if v != "" {
					set[k] = v
				}
			}
			return g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
				var out map[string]string
				var err error
				if len(paths) == 0 {
					out, err = fn.get(ctx, c, args[0])
				} else {
					out, err = fn.update(ctx, c, args[0], set, paths)
				}
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), formatLabels(out))
				return nil
			})(cmd, args)
		},
	}
}
