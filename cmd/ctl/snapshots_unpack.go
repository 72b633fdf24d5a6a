package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/berthrt/berth/client"
	imgplatform "github.com/berthrt/berth/images/platform"
)

// snapshotsUnpackCommand is `snapshots unpack REF`: the daemon unpacks a
// local image into the snapshotter, as a pull with unpack would.
func snapshotsUnpackCommand(g *globals, f *snapshotsFlags) *cobra.Command {
	var platform string
	cmd := &cobra.Command{
		Use:   "unpack [--platform P] REF",
		Short: "unpack a local image's layers into snapshots; print the top chain ID",
		Long: `unpack has the daemon unpack the layers of the local image REF (of the
--platform manifest of an index, linux/amd64 by default) into --snapshotter,
as "images pull" does after its fetch: one committed snapshot per layer,
named by its chain ID, those the snapshotter has already skipped. The
snapshots stay while the image exists. Prints the top chain ID, the parent
a container's snapshot starts from. Progress goes to stderr on a terminal.`,
		Example: `  berthctl snapshots --snapshotter native unpack busybox
  berthctl snapshots unpack --platform linux/arm64 example.com/app:1`,
		Args: cobra.ExactArgs(1),
		PreRunE: func(*cobra.Command, []string) error {
			if platform != "" {
				if _, err := imgplatform.Parse(platform); err != nil {
					return usageError{err}
				}
			}
			return nil
		},
		RunE: g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
			img, err := lookupImage(ctx, c, args[0])
			if err != nil {
				return err
			}
			opts := []client.UnpackOpt{client.WithUnpackPlatform(platform)}
			d := liveProgress(cmd.ErrOrStderr())
			if d != nil {
				opts = append(opts, client.WithUnpackProgress(d.update))
			}
			chainID, err := c.Unpack(ctx, img.Name(), f.snapshotter, opts...)
			if d != nil {
				d.finish()
			}
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), chainID)
			return nil
		}),
	}
	cmd.Flags().StringVar(&platform, "platform", "", "platform os/arch[/variant] of an index (default linux/amd64)")
	return cmd
}
