package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/emptypb"

	introspectionv1 "github.com/berthrt/berth/proto/introspection/v1"
)

func eventsCommand(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "events [FILTER...]",
		Short: "print events as they happen, until interrupted",
		Example: `  berthctl events 'topic=="/tasks/exit"'
  berthctl events 'namespace==ci,topic~="^/tasks/"'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, err := g.connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			envs, errs := c.Subscribe(ctx, args...)
			out := cmd.OutOrStdout()
			for {
				select {
				case env, ok := <-envs:
					if !ok {
						return nil
					}
					payload := "{}"
					if env.Event != nil {
						if m, err := env.Event.UnmarshalNew(); err == nil {
							if b, err := protojson.Marshal(m); err == nil {
								payload = string(b)
							}
						}
					}
					if asJSON {
						line, _ := json.Marshal(map[string]any{
							"timestamp": env.Timestamp, "namespace": env.Namespace, "topic": env.Topic, "event": json.RawMessage(payload),
						})
						fmt.Fprintln(out, string(line))
						continue
					}
					fmt.Fprintf(out, "%s %s %s %s\n", env.Timestamp.Format(time.RFC3339Nano), env.Namespace, env.Topic, payload)
				case err := <-errs:
					return err
				}
			}
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per line")
	return cmd
}

func pluginsCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "plugins", Aliases: []string{"plugin"}, Short: "the daemon's services and their status"}
	cmd.AddCommand(&cobra.Command{
		Use:     "ls [FILTER...]",
		Aliases: []string{"list"},
		Short:   "list the daemon's services",
		Example: `  berthctl plugins ls 'status==error'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, err := g.connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.IntrospectionService().Services(ctx, &introspectionv1.ServicesRequest{Filters: args})
			if err != nil {
				return err
			}
			t := newTable(cmd.OutOrStdout(), "TYPE", "ID", "STATUS")
			for _, s := range resp.Services {
				status := s.Status
				if s.Error != "" {
					status += ": " + s.Error
				}
				t.row(s.Type, s.Id, status)
			}
			return t.flush()
		},
	})
	return cmd
}

func versionCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "print the client's version and, when reachable, the daemon's",
		Example: "  berthctl version",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Client:\n  Version: %s\n", versionString())
			c, ctx, err := g.connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			v, err := c.VersionService().Version(ctx, &emptypb.Empty{})
			if err != nil {
				return hint(err, g.address)
			}
			fmt.Fprintf(out, "Server:\n  Version: %s\n  Revision: %s\n  Go: %s\n", v.Version, orDash(v.Revision), v.GoVersion)
			return nil
		},
	}
}
