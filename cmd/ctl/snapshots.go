package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/mount"
	"github.com/berthrt/berth/storage/snapshots"
)

// snapshotsFlags are the flags of every snapshots command.
type snapshotsFlags struct {
	snapshotter string
}

// open connects and returns the chosen snapshotter; the caller closes the
// client.
func (f *snapshotsFlags) open(g *globals, cmd *cobra.Command) (*client.Client, context.Context, snapshots.Snapshotter, error) {
	c, ctx, err := g.connect(cmd)
	if err != nil {
		return nil, nil, nil, err
	}
	return c, ctx, c.SnapshotService(f.snapshotter), nil
}

// runE returns a command's RunE that opens the chosen snapshotter, bounds
// the call by --timeout, and runs fn with them.
func (f *snapshotsFlags) runE(g *globals, fn func(cmd *cobra.Command, args []string, ctx context.Context, sn snapshots.Snapshotter) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, ctx, sn, err := f.open(g, cmd)
		if err != nil {
			return err
		}
		defer c.Close()
		ctx, cancel := g.call(ctx)
		defer cancel()
		return fn(cmd, args, ctx, sn)
	}
}

func snapshotsCommand(g *globals) *cobra.Command {
	f := &snapshotsFlags{}
	cmd := &cobra.Command{
		Use:     "snapshots",
		Aliases: []string{"snapshot", "sn"},
		Short:   "manage snapshots: the copy-on-write trees containers run on",
	}
	cmd.PersistentFlags().StringVar(&f.snapshotter, "snapshotter", envOr("BERTH_SNAPSHOTTER", ""),
		"snapshotter: overlayfs, native or a proxy plugin's name (env BERTH_SNAPSHOTTER; default: the daemon's)")
	cmd.AddCommand(
		snapshotsListCommand(g, f),
		snapshotsTreeCommand(g, f),
		snapshotsInfoCommand(g, f),
		snapshotsPrepareCommand(g, f, "prepare", "make an active (writable) snapshot KEY on PARENT (none: an empty tree)"),
		snapshotsPrepareCommand(g, f, "view", "make a read-only view KEY of PARENT"),
		snapshotsCommitCommand(g, f),
		snapshotsRemoveCommand(g, f),
		snapshotsMountsCommand(g, f),
		snapshotsUsageCommand(g, f),
		snapshotsDiffCommand(g, f),
		labelCommand(g, "snapshot", "  berthctl snapshots label rootfs-1 owner=ci stale=", labelFuncs{
			get: func(ctx context.Context, c *client.Client, key string) (map[string]string, error) {
				info, err := c.SnapshotService(f.snapshotter).Stat(ctx, key)
				return info.Labels, err
			},
			update: func(ctx context.Context, c *client.Client, key string, set map[string]string, paths []string) (map[string]string, error) {
				info, err := c.SnapshotService(f.snapshotter).Update(ctx, snapshots.Info{Name: key, Labels: set}, paths...)
				return info.Labels, err
			},
		}),
	)
	return cmd
}

// walkAll returns the snapshots matching any of filters, in key order.
func walkAll(ctx context.Context, sn snapshots.Snapshotter, filters ...string) ([]snapshots.Info, error) {
	var infos []snapshots.Info
	err := sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		infos = append(infos, info)
		return nil
	}, filters...)
	return infos, err
}

func snapshotsListCommand(g *globals, f *snapshotsFlags) *cobra.Command {
	var quiet bool
	cmd := &cobra.Command{
		Use:     "ls [FILTER...]",
		Aliases: []string{"list"},
		Short:   "list snapshots (filters: kind, name, parent, labels.KEY; several are ORed)",
		Example: "  berthctl snapshots ls\n  berthctl sn ls 'kind==committed'",
		RunE: f.runE(g, func(cmd *cobra.Command, args []string, ctx context.Context, sn snapshots.Snapshotter) error {
			infos, err := walkAll(ctx, sn, args...)
			if err != nil {
				return err
			}
			if quiet {
				for _, info := range infos {
					fmt.Fprintln(cmd.OutOrStdout(), info.Name)
				}
				return nil
			}
			t := newTable(cmd.OutOrStdout(), "KEY", "PARENT", "KIND", "CREATED", "LABELS")
			now := time.Now()
			for _, info := range infos {
				t.row(info.Name, orDash(info.Parent), info.Kind, age(now, info.Created), formatLabels(info.Labels))
			}
			return t.flush()
		}),
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print keys only")
	return cmd
}

func snapshotsTreeCommand(g *globals, f *snapshotsFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "tree",
		Short: "print snapshots as a tree of parents and children",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, sn, err := f.open(g, cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := g.call(ctx)
			defer cancel()
			infos, err := walkAll(ctx, sn)
			if err != nil {
				return err
			}
			printTree(cmd.OutOrStdout(), infos)
			return nil
		},
	}
}

// printTree prints each snapshot under its parent, children indented, in
// key order; a snapshot whose parent is not listed is a root.
func printTree(w io.Writer, infos []snapshots.Info) {
	children := map[string][]snapshots.Info{}
	known := map[string]bool{}
	for _, info := range infos {
		known[info.Name] = true
	}
	var roots []snapshots.Info
	for _, info := range infos {
		if info.Parent == "" || !known[info.Parent] {
			roots = append(roots, info)
		} else {
			children[info.Parent] = append(children[info.Parent], info)
		}
	}
	var print func(info snapshots.Info, depth int)
	print = func(info snapshots.Info, depth int) {
		prefix := ""
		if depth > 0 {
			prefix = strings.Repeat("  ", depth-1) + "\\_ "
		}
		fmt.Fprintf(w, "%s%s (%s)\n", prefix, info.Name, info.Kind)
		for _, child := range children[info.Name] {
			print(child, depth+1)
		}
	}
	for _, root := range roots {
		print(root, 0)
	}
}

func snapshotsInfoCommand(g *globals, f *snapshotsFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "info KEY",
		Short: "describe a snapshot, as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: f.runE(g, func(cmd *cobra.Command, args []string, ctx context.Context, sn snapshots.Snapshotter) error {
			info, err := sn.Stat(ctx, args[0])
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(struct {
				Name    string            `json:"name"`
				Parent  string            `json:"parent,omitempty"`
				Kind    string            `json:"kind"`
				Created time.Time         `json:"created"`
				Updated time.Time         `json:"updated"`
				Labels  map[string]string `json:"labels,omitempty"`
			}{info.Name, info.Parent, info.Kind.String(), info.Created, info.Updated, info.Labels})
		}),
	}
}

// snapshotsPrepareCommand is prepare or view: the same arguments and
// flags, an active snapshot or a read-only view.
func snapshotsPrepareCommand(g *globals, f *snapshotsFlags, verb, short string) *cobra.Command {
	var (
		target string
		labels []string
	)
	cmd := &cobra.Command{
		Use:     verb + " KEY [PARENT]",
		Short:   short + "; with --target, print how to mount it there",
		Example: fmt.Sprintf("  berthctl snapshots %s --target /mnt/ctr1 ctr1-rootfs sha256:…", verb),
		Args:    cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			set, err := parseLabels(labels)
			if err != nil {
				return err
			}
			parent := ""
			if len(args) == 2 {
				parent = args[1]
			}
			c, ctx, sn, err := f.open(g, cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := g.call(ctx)
			defer cancel()
			create := sn.Prepare
			if verb == "view" {
				create = sn.View
			}
			mounts, err := create(ctx, args[0], parent, snapshots.WithLabels(gcRoot(set)))
			if err != nil {
				return err
			}
			if target != "" {
				printMounts(cmd.OutOrStdout(), target, mounts)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&target, "target", "t", "", "print the mount commands for this folder")
	cmd.Flags().StringArrayVarP(&labels, "label", "l", nil, "a label KEY=VALUE (repeatable)")
	return cmd
}

// printMounts prints a shell command per mount, as ctr does.
func printMounts(w io.Writer, target string, mounts []mount.Mount) {
	for _, m := range mounts {
		line := fmt.Sprintf("mount -t %s %s %s", m.Type, m.Source, filepath.Join(target, m.Target))
		if len(m.Options) > 0 {
			line += " -o " + strings.Join(m.Options, ",")
		}
		fmt.Fprintln(w, line)
	}
}

func snapshotsCommitCommand(g *globals, f *snapshotsFlags) *cobra.Command {
	var labels []string
	cmd := &cobra.Command{
		Use:   "commit NAME KEY",
		Short: "commit the active snapshot KEY as NAME (KEY must be unmounted; it is gone afterwards)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			set, err := parseLabels(labels)
			if err != nil {
				return err
			}
			c, ctx, sn, err := f.open(g, cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := g.call(ctx)
			defer cancel()
			return sn.Commit(ctx, args[0], args[1], snapshots.WithLabels(gcRoot(set)))
		},
	}
	cmd.Flags().StringArrayVarP(&labels, "label", "l", nil, "a label KEY=VALUE (repeatable)")
	return cmd
}

func snapshotsRemoveCommand(g *globals, f *snapshotsFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "rm KEY...",
		Aliases: []string{"remove", "delete"},
		Short:   "remove snapshots (children first); their files go at the next garbage collection",
		Args:    cobra.MinimumNArgs(1),
		RunE: f.runE(g, func(cmd *cobra.Command, args []string, ctx context.Context, sn snapshots.Snapshotter) error {
			failed := 0
			for _, key := range args {
				if err := sn.Remove(ctx, key); err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "berthctl: remove %s: %v\n", key, err)
					failed++
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), key)
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d snapshots not removed", failed, len(args))
			}
			return nil
		}),
	}
}

func snapshotsMountsCommand(g *globals, f *snapshotsFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "mounts TARGET KEY",
		Short:   "print the commands that mount the active snapshot or view KEY on TARGET",
		Example: "  berthctl snapshots mounts /mnt/ctr1 ctr1-rootfs | sh",
		Args:    cobra.ExactArgs(2),
		RunE: f.runE(g, func(cmd *cobra.Command, args []string, ctx context.Context, sn snapshots.Snapshotter) error {
			mounts, err := sn.Mounts(ctx, args[1])
			if err != nil {
				return err
			}
			printMounts(cmd.OutOrStdout(), args[0], mounts)
			return nil
		}),
	}
}

func snapshotsUsageCommand(g *globals, f *snapshotsFlags) *cobra.Command {
	var bytes bool
	cmd := &cobra.Command{
		Use:   "usage [KEY...]",
		Short: "print the space snapshots take of their own (all without KEY)",
		RunE: f.runE(g, func(cmd *cobra.Command, args []string, ctx context.Context, sn snapshots.Snapshotter) error {
			keys := slices.Clone(args)
			if len(keys) == 0 {
				infos, err := walkAll(ctx, sn)
				if err != nil {
					return err
				}
				for _, info := range infos {
					keys = append(keys, info.Name)
				}
			}
			t := newTable(cmd.OutOrStdout(), "KEY", "SIZE", "INODES")
			var total snapshots.Usage
			for _, key := range keys {
				u, err := sn.Usage(ctx, key)
				if err != nil {
					return err
				}
				total.Add(u)
				t.row(key, sizeText(u.Size, bytes), u.Inodes)
			}
			if len(keys) > 1 {
				t.row("TOTAL", sizeText(total.Size, bytes), total.Inodes)
			}
			return t.flush()
		}),
	}
	cmd.Flags().BoolVar(&bytes, "bytes", false, "sizes in bytes")
	return cmd
}

func snapshotsDiffCommand(g *globals, f *snapshotsFlags) *cobra.Command {
	var (
		mediaType, ref string
		labels         []string
	)
	cmd := &cobra.Command{
		Use:   "diff KEY [PARENT]",
		Short: "write the changes of snapshot KEY from its parent (or PARENT) as a layer into the content store; print its digest",
		Long: "diff compares the snapshot KEY (active, view or committed) with its parent, or with the committed\n" +
			"snapshot PARENT, in the daemon, and writes the changes as a layer blob (gzip by default) into the\n" +
			"content store. The blob is labelled " + labelGCRoot + ", so that garbage collection keeps it until\n" +
			"it is removed (berthctl content rm).",
		Example: "  berthctl snapshots diff ctr1-rootfs\n  berthctl sn diff --media-type application/vnd.oci.image.layer.v1.tar+zstd ctr1-rootfs sha256:…",
		Args:    cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			set, err := parseLabels(labels)
			if err != nil {
				return err
			}
			c, ctx, sn, err := f.open(g, cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := g.call(ctx)
			defer cancel()
			// The temporary views and the blob are leased until the blob
			// has its root label.
			ctx, done, err := c.WithLease(ctx, client.WithLeaseExpiration(time.Hour))
			if err != nil {
				return err
			}
			defer done(context.WithoutCancel(ctx))
			info, err := sn.Stat(ctx, args[0])
			if err != nil {
				return err
			}
			parent := info.Parent
			if len(args) == 2 {
				parent = args[1]
			}
			var views []string
			defer func() {
				for _, key := range views {
					if err := sn.Remove(context.WithoutCancel(ctx), key); err != nil {
						fmt.Fprintf(cmd.ErrOrStderr(), "berthctl: remove temporary view %s: %v\n", key, err)
					}
				}
			}()
			view := func(name string) ([]mount.Mount, error) {
				key := fmt.Sprintf("diff-%d-%d", time.Now().UnixNano(), len(views))
				mounts, err := sn.View(ctx, key, name)
				if err == nil {
					views = append(views, key)
				}
				return mounts, err
			}
			var upper, lower []mount.Mount
			if info.Kind == snapshots.KindCommitted {
				upper, err = view(info.Name)
			} else {
				upper, err = sn.Mounts(ctx, info.Name)
			}
			if err != nil {
				return err
			}
			if parent != "" {
				if lower, err = view(parent); err != nil {
					return fmt.Errorf("parent %s: %w", parent, err)
				}
			}
			desc, _, err := c.DiffService().Compare(ctx, lower, upper,
				client.WithDiffMediaType(mediaType), client.WithDiffRef(ref), client.WithDiffLabels(gcRoot(set)))
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), desc.Digest)
			return nil
		},
	}
	cmd.Flags().StringVar(&mediaType, "media-type", "", "the layer's media type: its compression (default "+ocispec.MediaTypeImageLayerGzip+"; +zstd, or none: "+ocispec.MediaTypeImageLayer+")")
	cmd.Flags().StringVar(&ref, "ref", "", "the content ingest's ref (default: a unique one)")
	cmd.Flags().StringArrayVarP(&labels, "label", "l", nil, "a label KEY=VALUE of the blob (repeatable)")
	return cmd
}

func sizeText(n int64, bytes bool) string {
	if bytes {
		return fmt.Sprint(n)
	}
	return humanSize(n)
}

// labelGCRoot is storage/metadata.LabelGCRoot (not imported, to keep bbolt
// out of berthctl): a snapshot made by hand carries it, so that garbage
// collection keeps it until the user removes it, as ctr users expect.
const labelGCRoot = "berth.io/gc.root"

func gcRoot(labels map[string]string) map[string]string {
	if _, ok := labels[labelGCRoot]; !ok {
		labels[labelGCRoot] = time.Now().UTC().Format(time.RFC3339)
	}
	return labels
}
