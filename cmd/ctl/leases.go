package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/leases"
	"github.com/berthrt/berth/storage/metadata"
)

func leasesCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "leases", Aliases: []string{"lease"}, Short: "manage leases, which keep content from garbage collection"}
	var (
		id      string
		expires time.Duration
		quiet   bool
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
			l := metadata.Lease{ID: id, Labels: labels}
			if expires > 0 {
				if err := client.WithLeaseExpiration(expires)(&l); err != nil {
					return usageError{err}
				}
			}
			c, ctx, err := g.connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := g.call(ctx)
			defer cancel()
			created, err := c.LeasesService().Create(ctx, l)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), created.ID)
			return nil
		},
	}
	create.Flags().StringVar(&id, "id", "", "the lease's id (default: made up by the daemon)")
	create.Flags().DurationVar(&expires, "expires", 0, "expire after this long (default: never)")
	ls := &cobra.Command{
		Use:     "ls [FILTER...]",
		Aliases: []string{"list"},
		Short:   "list leases",
		Long:    `ls lists ID, CREATED, EXPIRES and LABELS. Filter fields: id, labels.<key>.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, err := g.connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := g.call(ctx)
			defer cancel()
			list, err := c.LeasesService().List(ctx, args...)
			if err != nil {
				return err
			}
			if quiet {
				for _, l := range list {
					fmt.Fprintln(cmd.OutOrStdout(), l.ID)
				}
				return nil
			}
			t := newTable(cmd.OutOrStdout(), "ID", "CREATED", "EXPIRES", "LABELS")
			for _, l := range list {
				exp := "never"
				if v, ok := l.Labels[leases.ExpireLabel]; ok {
					exp = v
				}
				t.row(l.ID, l.CreatedAt.Local().Format(time.RFC3339), exp, formatLabels(l.Labels))
			}
			return t.flush()
		},
	}
	ls.Flags().BoolVarP(&quiet, "quiet", "q", false, "print ids only")
	rm := &cobra.Command{
		Use:     "rm [--sync] ID...",
		Aliases: []string{"remove", "delete"},
		Short:   "remove leases (garbage collection then removes what only they kept)",
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
		},
	}
	rm.Flags().BoolVar(&sync, "sync", false, "return once garbage collection has run")
	cmd.AddCommand(create, ls, rm)
	return cmd
}
