package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/errdefs"
)

// contentIngestCommand is `content ingest`: stdin through a content
// Writer under a ref, resumable.
func contentIngestCommand(g *globals) *cobra.Command {
	var expected string
	var size int64
	var labels []string
	cmd := &cobra.Command{
		Use:   "ingest [flags] REF < DATA",
		Short: "write a blob from stdin into the content store",
		Long: `ingest writes stdin into the content store under the ingest REF, commits it
(checking --expected-size and --expected-digest when given) and prints its
digest. An ingest that was interrupted stays under REF (content active):
run ingest again with REF and the same data, and it skips the bytes written
already and writes the rest. A blob that exists already is success.

A blob that no image, lease or berth.io/gc.root label keeps goes with the
next garbage collection: --label berth.io/gc.root=1 keeps it.`,
		Example: `  berthctl content ingest my-config < config.json
  berthctl content ingest --expected-digest sha256:… --expected-size 1048576 layer-1 < layer.tar`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref := args[0]
			if err := content.ValidateRef(ref); err != nil {
				return usageError{err}
			}
			desc := ocispec.Descriptor{Size: size}
			if expected != "" {
				dgst, err := digest.Parse(expected)
				if err != nil {
					return usageError{fmt.Errorf("--expected-digest %q: %w", expected, err)}
				}
				desc.Digest = dgst
			}
			if size < 0 {
				return usageError{fmt.Errorf("--expected-size %d: negative", size)}
			}
			lbls, err := parseLabels(labels)
			if err != nil {
				return err
			}
			return g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) (err error) {
				w, err := c.ContentStore().Writer(ctx, content.WithRef(ref), content.WithDescriptor(desc))
				if errdefs.IsAlreadyExists(err) && desc.Digest != "" {
					fmt.Fprintln(cmd.OutOrStdout(), desc.Digest)
					return nil
				}
				if err != nil {
					return err
				}
				defer func() { err = errors.Join(err, w.Close()) }()
				st, err := w.Status()
				if err != nil {
					return err
				}
				in := cmd.InOrStdin()
				if st.Offset > 0 {
					fmt.Fprintf(cmd.ErrOrStderr(), "berthctl: resuming ingest %q at %d bytes\n", ref, st.Offset)
					if n, err := io.CopyN(io.Discard, in, st.Offset); err != nil {
						return fmt.Errorf("ingest %q: resume at %d: stdin ended after %d bytes: %w", ref, st.Offset, n, err)
					}
				}
				if _, err := io.CopyBuffer(w, in, make([]byte, content.ChunkSize)); err != nil {
					return err
				}
				var opts []content.Opt
				if len(lbls) > 0 {
					opts = append(opts, content.WithLabels(lbls))
				}
				err = w.Commit(ctx, size, desc.Digest, opts...)
				if errdefs.IsAlreadyExists(err) {
					err = nil
				}
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), w.Digest())
				return nil
			})(cmd, args)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&expected, "expected-digest", "", "refuse the blob unless it has this digest")
	fl.Int64Var(&size, "expected-size", 0, "refuse the blob unless it has this many bytes")
	fl.StringArrayVar(&labels, "label", nil, "label KEY=VALUE of the committed blob (repeatable)")
	return cmd
}

// contentFetchCommand is `content fetch`: a pull that records no image.
func contentFetchCommand(g *globals) *cobra.Command {
	var f remoteFlags
	cmd := &cobra.Command{
		Use:   "fetch [flags] REF",
		Short: "fetch an image's blobs into the content store without recording an image",
		Long: `fetch has the daemon fetch REF's manifests, configs and layers as images pull
does, every byte verified, but record no image. The root (REF's index or
manifest) is labelled berth.io/gc.root, so garbage collection keeps it and
what it references until the label or the blob is removed (content rm).
Progress goes to stdout as for images pull; the last line is "REF DIGEST".`,
		Example: `  berthctl content fetch --plain-http 127.0.0.1:5000/app:1.0
  berthctl content fetch --all-platforms --hosts-dir /etc/berth/certs.d registry.example/app:1`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := f.opts(cmd.InOrStdin(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			return g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
				d := newProgressDisplay(cmd.OutOrStdout())
				start := time.Now()
				root, err := c.Fetch(ctx, args[0], append(opts, client.WithPullProgress(d.update))...)
				d.finish()
				if err != nil {
					return err
				}
				if d.live {
					fmt.Fprintf(cmd.OutOrStdout(), "fetched in %.1fs\n", time.Since(start).Seconds())
				}
				name := args[0]
				if ref, err := normalizeRef(name); err == nil {
					name = ref
				}
				fmt.Fprintln(cmd.OutOrStdout(), name, root.Digest)
				return nil
			})(cmd, args)
		},
	}
	f.register(cmd, true)
	return cmd
}
