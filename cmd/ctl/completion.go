package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/snapshots"
)

// completionTimeout bounds what one completion asks the daemon: a shell
// waits for it at every TAB.
const completionTimeout = 2 * time.Second

// completionCommand is `completion bash|zsh|fish`: cobra's scripts, which
// call `berthctl __complete` for names, so that they complete from the
// daemon.
func completionCommand(root *cobra.Command) *cobra.Command {
	gens := map[string]func(cmd *cobra.Command) error{
		"bash": func(cmd *cobra.Command) error { return root.GenBashCompletionV2(cmd.OutOrStdout(), true) },
		"zsh":  func(cmd *cobra.Command) error { return root.GenZshCompletion(cmd.OutOrStdout()) },
		"fish": func(cmd *cobra.Command) error { return root.GenFishCompletion(cmd.OutOrStdout(), true) },
	}
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "print a shell's completion script",
		Long: `completion prints the script that makes a shell complete berthctl's commands
and flags, and the names of containers, tasks, images, snapshots, leases and
namespaces, which it asks the daemon for (nothing when it is not running).
make install puts the scripts where the shells look. The bash script needs
the bash-completion package.`,
		Example: `  source <(berthctl completion bash)
  berthctl completion zsh > "${fpath[1]}/_berthctl"
  berthctl completion fish > ~/.config/fish/completions/berthctl.fish`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"bash", "zsh", "fish"},
		RunE: func(cmd *cobra.Command, args []string) error {
			gen, ok := gens[args[0]]
			if !ok {
				return usageError{fmt.Errorf("shell %q: want bash, zsh or fish", args[0])}
			}
			return gen(cmd)
		},
	}
}

// nameLister lists the names of one kind of object for a completion.
type nameLister func(ctx context.Context, c *client.Client, cmd *cobra.Command) ([]string, error)

// argCompletions say which arguments of which commands complete which
// names: pos is the argument's index, -1 for every argument. Commands are
// named by their path below the root; a path absent from the tree is
// passed over.
var argCompletions = []struct {
	path string
	pos  int
	list nameLister
}{
	{"containers info", 0, containerNames},
	{"containers rm", -1, containerNames},
	{"containers label", 0, containerNames},
	{"containers commit", 0, containerNames},
	{"containers create", 0, imageNames},
	{"run", 0, imageNames},

	{"tasks attach", 0, containerNames},
	{"tasks exec", 0, containerNames},
	{"tasks kill", 0, containerNames},
	{"tasks metrics", 0, containerNames},
	{"tasks pause", 0, containerNames},
	{"tasks ps", 0, containerNames},
	{"tasks resume", 0, containerNames},
	{"tasks rm", -1, containerNames},
	{"tasks start", 0, containerNames},
	{"tasks update", 0, containerNames},
	{"tasks wait", 0, containerNames},

	{"images check", -1, imageNames},
	{"images export", -1, imageNames},
	{"images label", 0, imageNames},
	{"images mount", 0, imageNames},
	{"images push", 0, imageNames},
	{"images rm", -1, imageNames},
	{"images tag", 0, imageNames},

	{"snapshots commit", 1, snapshotKeys},
	{"snapshots info", 0, snapshotKeys},
	{"snapshots label", 0, snapshotKeys},
	{"snapshots mounts", 0, snapshotKeys},
	{"snapshots prepare", 1, snapshotKeys},
	{"snapshots view", 1, snapshotKeys},
	{"snapshots rm", -1, snapshotKeys},
	{"snapshots usage", -1, snapshotKeys},

	{"leases rm", -1, leaseIDs},
	{"namespaces rm", -1, namespaceNames},
	{"namespaces label", 0, namespaceNames},
}

// registerCompletions attaches the daemon's names to the commands of
// root's tree that take them, and to the --namespace flag. It walks the
// finished tree, so that the files that define the commands need not know.
func registerCompletions(root *cobra.Command, g *globals) {
	for _, ac := range argCompletions {
		cmd, _, err := root.Find(strings.Fields(ac.path))
		if err != nil || cmd == root || cmd.ValidArgsFunction != nil || cmd.CommandPath() != root.Name()+" "+ac.path {
			continue
		}
		cmd.ValidArgsFunction = g.completeArgs(ac.pos, ac.list)
	}
	root.RegisterFlagCompletionFunc("namespace", func(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		return g.complete(cmd, namespaceNames, nil, toComplete), cobra.ShellCompDirectiveNoFileComp
	})
}

// completeArgs completes argument pos (every one when -1) with the names
// list gives.
func (g *globals) completeArgs(pos int, list nameLister) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if pos >= 0 && len(args) != pos {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return g.complete(cmd, list, args, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

// complete asks the daemon for names that start with toComplete and are
// not among given; nothing, and no message, when it does not answer
// within completionTimeout.
func (g *globals) complete(cmd *cobra.Command, list nameLister, given []string, toComplete string) []string {
	c, err := client.New(g.address, client.WithDefaultNamespace(g.namespace), client.WithTimeout(completionTimeout))
	if err != nil {
		return nil
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
	defer cancel()
	names, err := list(ctx, c, cmd)
	if err != nil {
		return nil
	}
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, toComplete) && !slices.Contains(given, n) {
			out = append(out, n)
		}
	}
	return out
}

func containerNames(ctx context.Context, c *client.Client, _ *cobra.Command) ([]string, error) {
	infos, err := c.ListContainerInfos(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(infos))
	for i, ct := range infos {
		names[i] = ct.ID
	}
	return names, nil
}

func imageNames(ctx context.Context, c *client.Client, _ *cobra.Command) ([]string, error) {
	imgs, err := c.ImageService().List(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(imgs))
	for i, img := range imgs {
		names[i] = img.Name
	}
	return names, nil
}

// snapshotKeys lists the snapshots of the command's --snapshotter, else
// of the daemon's default snapshotter.
func snapshotKeys(ctx context.Context, c *client.Client, cmd *cobra.Command) ([]string, error) {
	name, _ := cmd.Flags().GetString("snapshotter")
	if name == "" {
		var err error
		if name, err = c.DefaultSnapshotter(ctx); err != nil {
			return nil, err
		}
	}
	var keys []string
	err := c.SnapshotService(name).Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		keys = append(keys, info.Name)
		return nil
	})
	return keys, err
}

func leaseIDs(ctx context.Context, c *client.Client, _ *cobra.Command) ([]string, error) {
	list, err := c.LeasesService().List(ctx)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(list))
	for i, l := range list {
		ids[i] = l.ID
	}
	return ids, nil
}

func namespaceNames(ctx context.Context, c *client.Client, _ *cobra.Command) ([]string, error) {
	nss, err := c.ListNamespaces(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(nss))
	for i, ns := range nss {
		names[i] = ns.Name
	}
	return names, nil
}
