package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/berthrt/berth/storage/content"
)

func contentCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "content", Short: "list, read, write, fetch and remove blobs of the content store"}
	var quiet bool
	ls := &cobra.Command{
		Use:     "ls [FILTER...]",
		Aliases: []string{"list"},
		Short:   "list the namespace's blobs",
		Long:    `ls lists DIGEST, SIZE, AGE and LABELS. Filter fields: digest, size, labels.<key>.`,
		Example: `  berthctl content ls
  berthctl content ls -q 'labels."berth.io/gc.root"'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, err := g.connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := g.call(ctx)
			defer cancel()
			t := newTable(cmd.OutOrStdout())
			if !quiet {
				t.row("DIGEST", "SIZE", "AGE", "LABELS")
			}
			now := time.Now()
			err = c.ContentStore().Walk(ctx, func(info content.Info) error {
				if quiet {
					t.row(info.Digest)
				} else {
					t.row(info.Digest, humanSize(info.Size), age(now, info.CreatedAt), formatLabels(info.Labels))
				}
				return nil
			}, args...)
			if ferr := t.flush(); err == nil {
				err = ferr
			}
			return err
		},
	}
	ls.Flags().BoolVarP(&quiet, "quiet", "q", false, "print digests only")
	cmd.AddCommand(contentIngestCommand(g), contentFetchCommand(g))
	cmd.AddCommand(ls, &cobra.Command{
		Use:     "get DIGEST",
		Short:   "write a blob to stdout",
		Example: `  berthctl content get sha256:… | jq .`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dgst, err := digest.Parse(args[0])
			if err != nil {
				return usageError{fmt.Errorf("digest %q: %w", args[0], err)}
			}
			c, ctx, err := g.connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := g.call(ctx)
			defer cancel()
			ra, err := c.ContentStore().ReaderAt(ctx, ocispec.Descriptor{Digest: dgst})
			if err != nil {
				return err
			}
			defer ra.Close()
			w := bufio.NewWriterSize(cmd.OutOrStdout(), content.ChunkSize)
			if _, err := io.Copy(w, content.NewReader(ra)); err != nil {
				return err
			}
			return w.Flush()
		},
	}, &cobra.Command{
		Use:     "rm DIGEST...",
		Aliases: []string{"remove", "delete"},
		Short:   "remove blobs from the namespace (garbage collection frees the bytes)",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, err := g.connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := g.call(ctx)
			defer cancel()
			var failed error
			for _, a := range args {
				dgst, err := digest.Parse(a)
				if err == nil {
					err = c.ContentStore().Delete(ctx, dgst)
				}
				if err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), "berthctl:", err)
					failed = errors.New("some blobs were not removed")
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), dgst)
			}
			return failed
		},
	}, &cobra.Command{
		Use:     "active [FILTER...]",
		Aliases: []string{"ingests"},
		Short:   "list the ingests under way (resumable writes)",
		Long:    `active lists REF, SIZE (written/expected), STARTED and UPDATED. Filter fields: ref, expected.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, err := g.connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := g.call(ctx)
			defer cancel()
			list, err := c.ContentStore().ListStatuses(ctx, args...)
			if err != nil {
				return err
			}
			now := time.Now()
			t := newTable(cmd.OutOrStdout(), "REF", "SIZE", "STARTED", "UPDATED")
			for _, st := range list {
				size := humanSize(st.Offset)
				if st.Total > 0 {
					size += "/" + humanSize(st.Total)
				}
				t.row(st.Ref, size, age(now, st.StartedAt)+" ago", age(now, st.UpdatedAt)+" ago")
			}
			return t.flush()
		},
	})
	return cmd
}

// age is the time from t to now, rounded for people: "3s", "5m", "2h",
// "4d".
func age(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case t.IsZero():
		return "-"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
