package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/berthrt/berth/mount"
	"github.com/berthrt/berth/snapshots"
)

// snapshotView is a snapshot as --format json prints it, with the
// snapshots API's field names.
type snapshotView struct {
	Name      string            `json:"name"`
	Parent    string            `json:"parent"` // "" for none
	Kind      string            `json:"kind"`   // view, active, committed
	Labels    map[string]string `json:"labels"`
	CreatedAt *time.Time        `json:"created_at"`
	UpdatedAt *time.Time        `json:"updated_at"`
}

func newSnapshotView(info snapshots.Info) snapshotView {
	return snapshotView{
		Name: info.Name, Parent: info.Parent, Kind: info.Kind.String(), Labels: nonNilLabels(info.Labels),
		CreatedAt: utcTime(info.Created), UpdatedAt: utcTime(info.Updated),
	}
}

// snapshotViews returns the views of the snapshots matching any of
// filters, in key order.
func snapshotViews(ctx context.Context, sn snapshots.Snapshotter, filters ...string) ([]snapshotView, error) {
	var views []snapshotView
	err := sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		views = append(views, newSnapshotView(info))
		return nil
	}, filters...)
	return views, err
}

// usageView is the space of one snapshot, in bytes.
type usageView struct {
	Key    string `json:"key"`
	Size   int64  `json:"size"`
	Inodes int64  `json:"inodes"`
}

// mountView is one mount of a snapshot, as the API's Mount names its
// fields.
type mountView struct {
	Type    string   `json:"type"`
	Source  string   `json:"source"`
	Target  string   `json:"target"` // in the rootfs; "" is the rootfs itself
	Options []string `json:"options"`
}

// printItems prints items for --format json or a template as printList
// does; for people it calls table, the command's own rendering (a tree,
// shell commands).
func printItems[T any](cmd *cobra.Command, o *outputFlags, items []T, table func(io.Writer) error) error {
	if o.format.isTable() {
		return table(cmd.OutOrStdout())
	}
	return printList(cmd, o, items, columns[T]{})
}

func snapshotsListCommand(g *globals, f *snapshotsFlags) *cobra.Command {
	var out outputFlags
	cmd := &cobra.Command{
		Use:     "ls [FILTER...]",
		Aliases: []string{"list"},
		Short:   "list snapshots (filters: kind, name, parent, labels.KEY; several are ORed)",
		Long:    "ls lists KEY, PARENT, KIND, CREATED and LABELS.",
		Example: "  berthctl snapshots ls\n  berthctl sn ls 'kind==committed'\n  berthctl sn ls --format '{{.name}} {{.parent}}'",
		RunE: f.runE(g, func(ctx context.Context, sn snapshots.Snapshotter, cmd *cobra.Command, args []string) error {
			views, err := snapshotViews(ctx, sn, args...)
			if err != nil {
				return err
			}
			now := time.Now()
			return printList(cmd, &out, views, columns[snapshotView]{
				headers: []string{"KEY", "PARENT", "KIND", "CREATED", "LABELS"},
				row: func(v snapshotView) []any {
					return []any{v.Name, orDash(v.Parent), v.Kind, agoOf(now, v.CreatedAt), formatLabels(v.Labels)}
				},
				id: func(v snapshotView) string { return v.Name },
			})
		}),
	}
	out.register(cmd)
	return cmd
}

func snapshotsTreeCommand(g *globals, f *snapshotsFlags) *cobra.Command {
	var out outputFlags
	cmd := &cobra.Command{
		Use:   "tree",
		Short: "print snapshots as a tree of parents and children",
		Long: `tree prints each snapshot under its parent, as "KEY (KIND)". --format json
prints the snapshots as ls does, a flat list in which each names its parent.`,
		Example: "  berthctl snapshots tree\n  berthctl sn --snapshotter native tree --format json",
		Args:    cobra.NoArgs,
		RunE: f.runE(g, func(ctx context.Context, sn snapshots.Snapshotter, cmd *cobra.Command, _ []string) error {
			views, err := snapshotViews(ctx, sn)
			if err != nil {
				return err
			}
			return printItems(cmd, &out, views, func(w io.Writer) error { return printTree(w, views) })
		}),
	}
	out.registerFormat(cmd)
	return cmd
}

// printTree prints each snapshot under its parent, children indented, in
// key order; a snapshot whose parent is not listed is a root.
func printTree(w io.Writer, views []snapshotView) error {
	children := map[string][]snapshotView{}
	known := map[string]bool{}
	for _, v := range views {
		known[v.Name] = true
	}
	var roots []snapshotView
	for _, v := range views {
		if v.Parent == "" || !known[v.Parent] {
			roots = append(roots, v)
		} else {
			children[v.Parent] = append(children[v.Parent], v)
		}
	}
	var print func(v snapshotView, depth int) error
	print = func(v snapshotView, depth int) error {
		prefix := ""
		if depth > 0 {
			prefix = strings.Repeat("  ", depth-1) + "\\_ "
		}
		if _, err := fmt.Fprintf(w, "%s%s (%s)\n", prefix, v.Name, v.Kind); err != nil {
			return err
		}
		for _, child := range children[v.Name] {
			if err := print(child, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	for _, root := range roots {
		if err := print(root, 0); err != nil {
			return err
		}
	}
	return nil
}

func snapshotsInfoCommand(g *globals, f *snapshotsFlags) *cobra.Command {
	var out outputFlags
	cmd := &cobra.Command{
		Use:     "info KEY",
		Short:   "describe a snapshot: parent, kind, times, labels",
		Example: "  berthctl snapshots info ctr1-rootfs\n  berthctl sn info --format '{{.parent}}' ctr1-rootfs",
		Args:    cobra.ExactArgs(1),
		RunE: f.runE(g, func(ctx context.Context, sn snapshots.Snapshotter, cmd *cobra.Command, args []string) error {
			info, err := sn.Stat(ctx, args[0])
			if err != nil {
				return err
			}
			return printObject(cmd, &out, newSnapshotView(info), func(w io.Writer, v snapshotView) error {
				now := time.Now()
				t := newTable(w)
				t.row("Key:", v.Name)
				t.row("Parent:", orDash(v.Parent))
				t.row("Kind:", v.Kind)
				t.row("Created:", agoOf(now, v.CreatedAt))
				t.row("Updated:", agoOf(now, v.UpdatedAt))
				t.row("Labels:", formatLabels(v.Labels))
				return t.flush()
			})
		}),
	}
	out.registerFormat(cmd)
	return cmd
}

func snapshotsMountsCommand(g *globals, f *snapshotsFlags) *cobra.Command {
	var out outputFlags
	cmd := &cobra.Command{
		Use:   "mounts TARGET KEY",
		Short: "print the commands that mount the active snapshot or view KEY on TARGET",
		Long: `mounts prints a mount command per mount of KEY, with TARGET as its folder.
--format json prints the mounts as the daemon gives them (TARGET is not
used): type, source, target (in the rootfs, "" for its root) and options.`,
		Example: "  berthctl snapshots mounts /mnt/ctr1 ctr1-rootfs | sh\n  berthctl sn mounts --format json /mnt/ctr1 ctr1-rootfs",
		Args:    cobra.ExactArgs(2),
		RunE: f.runE(g, func(ctx context.Context, sn snapshots.Snapshotter, cmd *cobra.Command, args []string) error {
			mounts, err := sn.Mounts(ctx, args[1])
			if err != nil {
				return err
			}
			views := make([]mountView, len(mounts))
			for i, m := range mounts {
				views[i] = mountView{Type: m.Type, Source: m.Source, Target: m.Target, Options: append([]string{}, m.Options...)}
			}
			return printItems(cmd, &out, views, func(w io.Writer) error {
				printMounts(w, args[0], mounts)
				return nil
			})
		}),
	}
	out.registerFormat(cmd)
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

func snapshotsUsageCommand(g *globals, f *snapshotsFlags) *cobra.Command {
	var (
		bytes bool
		out   outputFlags
	)
	cmd := &cobra.Command{
		Use:   "usage [KEY...]",
		Short: "print the space snapshots take of their own (all without KEY)",
		Long: `usage prints KEY, SIZE and INODES of each snapshot (its parents' files not
counted), and their TOTAL when there are several. --format json prints
one object per snapshot, sizes in bytes, and no total.`,
		Example: "  berthctl snapshots usage\n  berthctl sn usage --bytes ctr1-rootfs\n  berthctl sn usage --format '{{.key}} {{.size}}'",
		RunE: f.runE(g, func(ctx context.Context, sn snapshots.Snapshotter, cmd *cobra.Command, args []string) error {
			keys := slices.Clone(args)
			if len(keys) == 0 {
				all, err := snapshotViews(ctx, sn)
				if err != nil {
					return err
				}
				for _, v := range all {
					keys = append(keys, v.Name)
				}
			}
			views := make([]usageView, 0, len(keys)+1)
			var total snapshots.Usage
			for _, key := range keys {
				u, err := sn.Usage(ctx, key)
				if err != nil {
					return err // the daemon's error names the snapshot
				}
				total.Add(u)
				views = append(views, usageView{Key: key, Size: u.Size, Inodes: u.Inodes})
			}
			if out.format.isTable() && len(keys) > 1 {
				views = append(views, usageView{Key: "TOTAL", Size: total.Size, Inodes: total.Inodes})
			}
			return printList(cmd, &out, views, columns[usageView]{
				headers: []string{"KEY", "SIZE", "INODES"},
				row: func(v usageView) []any {
					if bytes {
						return []any{v.Key, v.Size, v.Inodes}
					}
					return []any{v.Key, humanSize(v.Size), v.Inodes}
				},
			})
		}),
	}
	cmd.Flags().BoolVar(&bytes, "bytes", false, "sizes in bytes in the table")
	out.registerFormat(cmd)
	return cmd
}
