package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/content"
)

func contentCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "content", Short: "list, read, write, fetch and remove blobs of the content store"}
	var out outputFlags
	ls := &cobra.Command{
		Use:     "ls [FILTER...]",
		Aliases: []string{"list"},
		Short:   "list the namespace's blobs",
		Long:    `ls lists DIGEST, SIZE, CREATED and LABELS. Filter fields: digest, size, labels.<key>.`,
		Example: `  berthctl content ls
  berthctl content ls -q 'labels."berth.io/gc.root"'
  berthctl content ls --format '{{.digest}} {{.size}}'`,
		RunE: g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
			views, err := blobViews(ctx, c.ContentStore(), args...)
			if err != nil {
				return err
			}
			now := time.Now()
			return printList(cmd, &out, views, columns[blobView]{
				headers: []string{"DIGEST", "SIZE", "CREATED", "LABELS"},
				row: func(v blobView) []any {
					return []any{v.Digest, humanSize(v.Size), agoOf(now, v.CreatedAt), formatLabels(v.Labels)}
				},
				id: func(v blobView) string { return v.Digest.String() },
			})
		}),
	}
	out.register(ls)
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
			return g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
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
			})(cmd, args)
		},
	}, &cobra.Command{
		Use:     "rm DIGEST...",
		Aliases: []string{"remove", "delete"},
		Short:   "remove blobs from the namespace (garbage collection frees the bytes)",
		Example: `  berthctl content rm sha256:…`,
		Args:    cobra.MinimumNArgs(1),
		RunE: g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
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
		}),
	}, contentActiveCommand(g), contentLabelCommand(g), contentPruneCommand(g))
	return cmd
}

// contentActiveCommand is `content active`: the ingests under way.
func contentActiveCommand(g *globals) *cobra.Command {
	var out outputFlags
	cmd := &cobra.Command{
		Use:     "active [FILTER...]",
		Aliases: []string{"ingests"},
		Short:   "list the ingests under way (resumable writes)",
		Long:    `active lists REF, SIZE (written/expected), STARTED and UPDATED. Filter fields: ref, expected.`,
		Example: `  berthctl content active
  berthctl content active --format json`,
		RunE: g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
			list, err := c.ContentStore().ListStatuses(ctx, args...)
			if err != nil {
				return err
			}
			views := make([]ingestView, len(list))
			for i, st := range list {
				views[i] = ingestView{
					Ref: st.Ref, Offset: st.Offset, Total: st.Total, Expected: st.Expected,
					StartedAt: utcTime(st.StartedAt), UpdatedAt: utcTime(st.UpdatedAt),
				}
			}
			now := time.Now()
			return printList(cmd, &out, views, columns[ingestView]{
				headers: []string{"REF", "SIZE", "STARTED", "UPDATED"},
				row: func(v ingestView) []any {
					size := humanSize(v.Offset)
					if v.Total > 0 {
						size += "/" + humanSize(v.Total)
					}
					return []any{v.Ref, size, agoOf(now, v.StartedAt), agoOf(now, v.UpdatedAt)}
				},
				id: func(v ingestView) string { return v.Ref },
			})
		}),
	}
	out.register(cmd)
	return cmd
}

// contentLabelCommand is `content label`: a blob's labels, such as
// berth.io/gc.root, which keeps it from garbage collection.
func contentLabelCommand(g *globals) *cobra.Command {
	info := func(ctx context.Context, c *client.Client, name string, set map[string]string, paths []string) (map[string]string, error) {
		dgst, err := digest.Parse(name)
		if err != nil {
			return nil, usageError{fmt.Errorf("digest %q: %w", name, err)}
		}
		if paths == nil {
			got, err := c.ContentStore().Info(ctx, dgst)
			return got.Labels, err
		}
		got, err := c.ContentStore().Update(ctx, content.Info{Digest: dgst, Labels: set}, paths...)
		return got.Labels, err
	}
	return labelCommand(g, "blob", `  berthctl content label sha256:… berth.io/gc.root=1
  berthctl content label sha256:… berth.io/gc.root=`, labelFuncs{
		get: func(ctx context.Context, c *client.Client, name string) (map[string]string, error) {
			return info(ctx, c, name, nil, nil)
		},
		update: info,
	})
}

// contentPruneCommand is `content prune`: a garbage collection, reported
// as the namespace's blobs it removed.
func contentPruneCommand(g *globals) *cobra.Command {
	var out outputFlags
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "remove the blobs that nothing references, and print them",
		Long: `prune runs a garbage collection now and prints the namespace's blobs it
removed, then what the collection removed in all: it removes every blob that
no image, container, lease or berth.io/gc.root label reaches (along
berth.io/gc.ref.* labels), in every namespace, as the daemon's scheduled
collections do. Label a blob berth.io/gc.root=1 (content label) to keep it.`,
		Example: `  berthctl content prune
  berthctl content prune --format json`,
		Args: cobra.NoArgs,
		RunE: g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, _ []string) error {
			before, err := blobViews(ctx, c.ContentStore())
			if err != nil {
				return err
			}
			stats, err := c.GarbageCollect(ctx)
			if err != nil {
				return fmt.Errorf("garbage collection: %w", err)
			}
			after, err := blobViews(ctx, c.ContentStore())
			if err != nil {
				return err
			}
			kept := map[digest.Digest]bool{}
			for _, v := range after {
				kept[v.Digest] = true
			}
			res := pruneView{Removed: []blobView{}, Collected: gcView{
				ContentRecords: stats.ContentRecords, Blobs: stats.Blobs, BlobBytes: stats.BlobBytes,
				Ingests: stats.Ingests, Leases: stats.Leases, Snapshots: stats.Snapshots,
			}}
			for _, v := range before {
				if !kept[v.Digest] {
					res.Removed = append(res.Removed, v)
				}
			}
			return printObject(cmd, &out, res, func(w io.Writer, res pruneView) error {
				for _, v := range res.Removed {
					fmt.Fprintf(w, "%s\t%s\n", v.Digest, humanSize(v.Size))
				}
				s := res.Collected
				_, err := fmt.Fprintf(w, "removed from the store: %s (%s); in all namespaces: %s, %s, %s, %s\n",
					count(s.Blobs, "blob"), humanSize(s.BlobBytes), count(s.ContentRecords, "record of a blob"),
					count(s.Ingests, "ingest"), count(s.Leases, "expired lease"), count(s.Snapshots, "snapshot"))
				return err
			})
		}),
	}
	out.registerFormat(cmd)
	return cmd
}

// count is "1 blob", "2 blobs"; "records of a blob" for "record of a blob".
func count(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	if first, rest, ok := strings.Cut(what, " "); ok {
		return fmt.Sprintf("%d %ss %s", n, first, rest)
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// blobViews lists the namespace's blobs that match filters.
func blobViews(ctx context.Context, store content.Store, filters ...string) ([]blobView, error) {
	var views []blobView
	err := store.Walk(ctx, func(info content.Info) error {
		views = append(views, blobView{
			Digest: info.Digest, Size: info.Size,
			CreatedAt: utcTime(info.CreatedAt), UpdatedAt: utcTime(info.UpdatedAt),
			Labels: nonNilLabels(info.Labels),
		})
		return nil
	}, filters...)
	return views, err
}

// blobView is a blob as --format json prints it.
type blobView struct {
	Digest    digest.Digest     `json:"digest"`
	Size      int64             `json:"size"`
	CreatedAt *time.Time        `json:"created_at"`
	UpdatedAt *time.Time        `json:"updated_at"`
	Labels    map[string]string `json:"labels"`
}

// ingestView is an ingest under way as --format json prints it.
type ingestView struct {
	Ref       string        `json:"ref"`
	Offset    int64         `json:"offset"`
	Total     int64         `json:"total"`
	Expected  digest.Digest `json:"expected"`
	StartedAt *time.Time    `json:"started_at"`
	UpdatedAt *time.Time    `json:"updated_at"`
}

// pruneView is what content prune did: the namespace's blobs it removed
// and the collection's counts over every namespace.
type pruneView struct {
	Removed   []blobView `json:"removed"`
	Collected gcView     `json:"collected"`
}

// gcView is a garbage collection's counts, as the GC API names them.
type gcView struct {
	ContentRecords int   `json:"content_records"`
	Blobs          int   `json:"blobs"`
	BlobBytes      int64 `json:"blob_bytes"`
	Ingests        int   `json:"ingests"`
	Leases         int   `json:"leases"`
	Snapshots      int   `json:"snapshots"`
}
