package main

import (
	"context"
	"fmt"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/gc"
	"github.com/berthrt/berth/mount"
	"github.com/berthrt/berth/snapshots"
)

// snapshotsFlags are the flags of every snapshots command.
type snapshotsFlags struct {
	snapshotter string
}

// snapshotFunc is the body of a snapshots command.
type snapshotFunc func(ctx context.Context, sn snapshots.Snapshotter, cmd *cobra.Command, args []string) error

// runE returns a command's RunE that connects as g.withClient does and
// runs fn with the chosen snapshotter.
func (f *snapshotsFlags) runE(g *globals, fn snapshotFunc) func(*cobra.Command, []string) error {
	return g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
		return fn(ctx, c.SnapshotService(f.snapshotter), cmd, args)
	})
}

func snapshotsCommand(g *globals) *cobra.Command {
	f := &snapshotsFlags{}
	cmd := &cobra.Command{
		Use:     "snapshots",
		Aliases: []string{"snapshot", "sn"},
		Short:   "manage snapshots: the copy-on-write trees containers run on",
	}
	cmd.PersistentFlags().StringVar(&f.snapshotter, "snapshotter", envOr("BERTH_SNAPSHOTTER", ""),
		"snapshotter: overlayfs, native, btrfs or a proxy plugin's name (env BERTH_SNAPSHOTTER; default: the daemon's)")
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
		snapshotsUnpackCommand(g, f),
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
			return f.runE(g, func(ctx context.Context, sn snapshots.Snapshotter, cmd *cobra.Command, args []string) error {
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
			})(cmd, args)
		},
	}
	cmd.Flags().StringVarP(&target, "target", "t", "", "print the mount commands for this folder")
	cmd.Flags().StringArrayVarP(&labels, "label", "l", nil, "a label KEY=VALUE (repeatable)")
	return cmd
}

func snapshotsCommitCommand(g *globals, f *snapshotsFlags) *cobra.Command {
	var labels []string
	cmd := &cobra.Command{
		Use:     "commit NAME KEY",
		Short:   "commit the active snapshot KEY as NAME (KEY must be unmounted; it is gone afterwards)",
		Example: "  berthctl snapshots commit --label owner=ci base base-active",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			set, err := parseLabels(labels)
			if err != nil {
				return err
			}
			return f.runE(g, func(ctx context.Context, sn snapshots.Snapshotter, _ *cobra.Command, args []string) error {
				return sn.Commit(ctx, args[0], args[1], snapshots.WithLabels(gcRoot(set)))
			})(cmd, args)
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
		Example: "  berthctl snapshots rm ctr1-rootfs\n  berthctl sn rm $(berthctl sn ls -q 'labels.owner==ci')",
		Args:    cobra.MinimumNArgs(1),
		RunE: f.runE(g, func(ctx context.Context, sn snapshots.Snapshotter, cmd *cobra.Command, args []string) error {
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
			"content store. The blob is labelled " + gc.LabelRoot + ", so that garbage collection keeps it until\n" +
			"it is removed (berthctl content rm).",
		Example: "  berthctl snapshots diff ctr1-rootfs\n  berthctl sn diff --media-type application/vnd.oci.image.layer.v1.tar+zstd ctr1-rootfs sha256:…",
		Args:    cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			set, err := parseLabels(labels)
			if err != nil {
				return err
			}
			return g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
				sn := c.SnapshotService(f.snapshotter)
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
			})(cmd, args)
		},
	}
	cmd.Flags().StringVar(&mediaType, "media-type", "", "the layer's media type: its compression (default "+ocispec.MediaTypeImageLayerGzip+"; +zstd, or none: "+ocispec.MediaTypeImageLayer+")")
	cmd.Flags().StringVar(&ref, "ref", "", "the content ingest's ref (default: a unique one)")
	cmd.Flags().StringArrayVarP(&labels, "label", "l", nil, "a label KEY=VALUE of the blob (repeatable)")
	return cmd
}

// gcRoot adds gc.LabelRoot to labels: a snapshot made by hand carries it,
// so that garbage collection keeps it until the user removes it, as ctr
// users expect.
func gcRoot(labels map[string]string) map[string]string {
	if _, ok := labels[gc.LabelRoot]; !ok {
		labels[gc.LabelRoot] = time.Now().UTC().Format(time.RFC3339)
	}
	return labels
}
