package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/platforms"
	"github.com/spf13/cobra"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/diff"
	"github.com/berthrt/berth/images"
	"github.com/berthrt/berth/images/converter"
	imgplatform "github.com/berthrt/berth/images/platform"
)

func imageConvertCommand(g *globals) *cobra.Command {
	var compression, platform string
	var all, oci bool
	cmd := &cobra.Command{
		Use:   "convert [flags] SRC DST",
		Short: "write an image again with its layers in another compression",
		Long: `convert rewrites the image SRC with its layers compressed by --compression
(gzip, zstd or uncompressed) and names the result DST (SRC itself converts
in place; an existing DST is replaced). The uncompressed layers, the config
and the chain ID stay the same, so the converted image keeps SRC's unpacked
snapshots. --oci writes OCI media types for a Docker image (zstd implies
it). Of an index, only the --platform manifest (default linux/amd64) is
converted, and the new index lists only it; --all-platforms converts every
manifest, each of which must be present. Prints "DST DIGEST".`,
		Example: `  berthctl images convert --compression zstd busybox example.com/busybox:zstd
  berthctl images convert --oci --all-platforms app:1 app:1-oci`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			comp, err := diff.ParseCompression(compression)
			if err != nil {
				return usageError{err}
			}
			opts := []converter.Opt{converter.WithCompression(comp)}
			if oci {
				opts = append(opts, converter.WithOCI())
			}
			switch {
			case all && platform != "":
				return usageError{errors.New("--platform and --all-platforms together")}
			case platform != "":
				p, err := imgplatform.Parse(platform)
				if err != nil {
					return usageError{err}
				}
				opts = append(opts, converter.WithPlatforms(platforms.OnlyStrict(p)))
			case !all:
				opts = append(opts, converter.WithPlatforms(images.DefaultMatcher()))
			}
			return g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
				src, err := lookupImage(ctx, c, args[0])
				if err != nil {
					return err
				}
				opts = append(opts, converter.WithProgress(func(p converter.Progress) {
					if p.From.Digest == p.To.Digest {
						fmt.Fprintf(cmd.ErrOrStderr(), "layer %s kept\n", shortDigest(p.From.Digest.String()))
						return
					}
					fmt.Fprintf(cmd.ErrOrStderr(), "layer %s %s -> %s %s\n", shortDigest(p.From.Digest.String()), humanSize(p.From.Size), shortDigest(p.To.Digest.String()), humanSize(p.To.Size))
				}))
				img, err := c.Convert(ctx, args[1], src.Name(), opts...)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), img.Name(), img.Target().Digest)
				return nil
			})(cmd, args)
		},
	}
	cmd.Flags().StringVar(&compression, "compression", "gzip", "compression of the layers: gzip, zstd or uncompressed")
	cmd.Flags().BoolVar(&oci, "oci", false, "write OCI media types for a Docker image")
	cmd.Flags().StringVar(&platform, "platform", "", "platform os/arch[/variant] of an index to convert (default linux/amd64)")
	cmd.Flags().BoolVar(&all, "all-platforms", false, "convert every platform of an index")
	return cmd
}
