package main

import (
	"context"
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/berthrt/berth/client"
)

// containersCommitCommand is `containers commit ID REF`: the container's
// changes as a new image.
func containersCommitCommand(g *globals) *cobra.Command {
	var (
		pause               bool
		mediaType           string
		author, message     string
		cmdArgs, entrypoint []string
		env                 []string
		workdir             string
	)
	cmd := &cobra.Command{
		Use:   "commit ID REF",
		Short: "make the image REF of the changes of container ID to its image; print the new manifest's digest",
		Long: "commit compares the container's snapshot with its image's layers in the daemon and records the image\n" +
			"REF: the image's layers with the changes on top as a new layer, and its config with the --change-*\n" +
			"flags applied. The container may be running (--pause freezes it meanwhile) or stopped. The new\n" +
			"image is not unpacked; push it, or pull it back with unpack, to run containers of it.",
		Example: "  berthctl containers commit web1 registry.example/web:patched --change-cmd sh --change-cmd -c --change-cmd 'httpd -f'",
		Args:    cobra.ExactArgs(2),
		RunE: g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
			opts := []client.CommitOpt{client.WithCommitAuthor(author), client.WithCommitMessage(message)}
			if pause {
				opts = append(opts, client.WithCommitPause)
			}
			if mediaType != "" {
				opts = append(opts, client.WithCommitMediaType(mediaType))
			}
			setCmd, setEntrypoint := cmd.Flags().Changed("change-cmd"), cmd.Flags().Changed("change-entrypoint")
			opts = append(opts, client.WithCommitConfig(func(cfg *ocispec.ImageConfig) {
				if setCmd {
					cfg.Cmd = orNone(cmdArgs)
				}
				if setEntrypoint {
					cfg.Entrypoint = orNone(entrypoint)
				}
				cfg.Env = append(cfg.Env, env...)
				if workdir != "" {
					cfg.WorkingDir = workdir
				}
			}))
			img, err := c.Commit(ctx, args[0], args[1], opts...)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), img.Target().Digest)
			return nil
		}),
	}
	fl := cmd.Flags()
	fl.BoolVar(&pause, "pause", false, "pause the running task while its changes are read")
	fl.StringVar(&mediaType, "media-type", "", "the new layer's media type: its compression (default "+ocispec.MediaTypeImageLayerGzip+"; +zstd, or none: "+ocispec.MediaTypeImageLayer+")")
	fl.StringVar(&author, "author", "", "the image's author")
	fl.StringVarP(&message, "message", "m", "", "the comment of the new layer's history entry")
	fl.StringArrayVar(&cmdArgs, "change-cmd", nil, "the image's command, one argument per flag (a single \"\": none)")
	fl.StringArrayVar(&entrypoint, "change-entrypoint", nil, "the image's entrypoint, one argument per flag (a single \"\": none)")
	fl.StringArrayVar(&env, "change-env", nil, "add KEY=VALUE to the image's environment (repeatable)")
	fl.StringVar(&workdir, "change-workdir", "", "the image's working directory")
	return cmd
}

// orNone is args, nil when it is the single empty argument that asks for
// none.
func orNone(args []string) []string {
	if len(args) == 1 && args[0] == "" {
		return nil
	}
	return args
}
