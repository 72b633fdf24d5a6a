package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/leases"
)

func leasesCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "leases", Aliases: []string{"lease"}, Short: "manage leases, which keep content from garbage collection"}
	var (
		id      string
		expires time.Duration
		out     outputFlags
		sync    bool
	)
	create := &cobra.Command{
		Use:   "create [--id ID] [--expires DURATION] [KEY=VALUE...]",
		Short: "create a lease and print its id",
		Long: `create makes a lease; content written with it (the client's lease, or
content ingests naming it) is kept until the lease is removed or expires.`,
		Example: `  berthctl leases create --expires 1h purpose=build`,
		RunE: func(cmd *cobra.Command, args []string) error {
			labels, err := parseLabels(args)
			if err != nil {
				return err
			}
			l := leases.Lease{ID: id, Labels: labels}
			if expires > 0 {
				if err := client.WithLeaseExpiration(expires)(&l); err != nil {
					return usageError{err}
				}
			}
			return g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
				created, err := c.LeasesService().Create(ctx, l)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), created.ID)
				return nil
			})(cmd, args)
		},
	}
	create.Flags().StringVar(&id, "id", "", "the lease's id (default: made up by the daemon)")
	create.Flags().DurationVar(&expires, "expires", 0, "expire after this long (default: never)")
	ls := &cobra.Command{
		Use:     "ls [FILTER...]",
		Aliases: []string{"list"},
		Short:   "list leases",
		Long: `ls lists ID, CREATED, EXPIRES and LABELS. Filter fields: id, labels.<key>.
A lease's expiry is its label ` + leases.ExpireLabel + ` (RFC 3339).`,
		Example: `  berthctl leases ls
  berthctl leases ls -q 'labels.purpose==build'`,
		RunE: g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
			list, err := c.LeasesService().List(ctx, args...)
			if err != nil {
				return err
			}
			views := make([]leaseView, len(list))
			for i, l := range list {
				views[i] = leaseView{ID: l.ID, CreatedAt: utcTime(l.CreatedAt), Labels: nonNilLabels(l.Labels)}
			}
			now := time.Now()
			return printList(cmd, &out, views, columns[leaseView]{
				headers: []string{"ID", "CREATED", "EXPIRES", "LABELS"},
				row: func(v leaseView) []any {
					return []any{v.ID, agoOf(now, v.CreatedAt), expiry(now, v.Labels), formatLabels(v.Labels)}
				},
				id: func(v leaseView) string { return v.ID },
			})
		}),
	}
	out.register(ls)
	rm := &cobra.Command{
		Use:     "rm [--sync] ID...",
		Aliases: []string{"remove", "delete"},
		Short:   "remove leases (garbage collection then removes what only they kept)",
		Example: `  berthctl leases rm --sync build-1`,
		Args:    cobra.MinimumNArgs(1),
		RunE: g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
			var failed error
			for _, id := range args {
				if err := c.LeasesService().Delete(ctx, id); err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), "berthctl:", err)
					failed = errors.New("some leases were not removed")
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), id)
			}
			if sync {
				if _, err := c.GarbageCollect(ctx); err != nil {
					return fmt.Errorf("garbage collection: %w", err)
				}
			}
			return failed
		}),
	}
	rm.Flags().BoolVar(&sync, "sync", false, "return once garbage collection has run")
	cmd.AddCommand(create, ls, rm)
	return cmd
}

// leaseView is a lease as --format json prints it; its expiry is the
// label leases.ExpireLabel.
type leaseView struct {
	ID        string            `json:"id"`
	CreatedAt *time.Time        `json:"created_at"`
	Labels    map[string]string `json:"labels"`
}

// expiry is when a lease with labels expires, for people: "in 3 hours",
// "never", or the label as it is when it is no time.
func expiry(now time.Time, labels map[string]string) string {
	v, ok := labels[leases.ExpireLabel]
	if !ok {
		return "never"
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return v
	}
	return ago(now, t)
}
