package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthrt/berth/client"
	introspectionv1 "github.com/berthrt/berth/proto/introspection/v1"
)

func eventsCommand(g *globals) *cobra.Command {
	var (
		out    outputFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "events [FILTER...]",
		Short: "print events as they happen, until interrupted",
		Long: `events prints one line per event: TIME NAMESPACE TOPIC PAYLOAD. With
--format json each line is one JSON object (timestamp, namespace, topic,
event: the payload with the API's snake_case field names).`,
		Example: `  berthctl events 'topic=="/tasks/exit"'
  berthctl events 'namespace==ci,topic~="^/tasks/"'
  berthctl events --format json | jq -r .event.container_id`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if asJSON {
				if err := out.format.Set(formatJSON); err != nil {
					return err
				}
			}
			c, ctx, err := g.connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			envs, errs := c.Subscribe(ctx, args...)
			w := cmd.OutOrStdout()
			// The table line keeps protojson's default lowerCamelCase
			// payload, as it always printed.
			protoNames := !out.format.isTable()
			for {
				select {
				case env, ok := <-envs:
					if !ok {
						return nil
					}
					v := eventView{
						Timestamp: utcTime(env.Timestamp), Namespace: env.Namespace, Topic: env.Topic,
						Event: payload(env.Event, protoNames),
					}
					if err := printLine(w, &out, v, eventLine); err != nil {
						return err
					}
				case err := <-errs:
					return err
				}
			}
		},
	}
	out.registerFormat(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per line")
	cmd.Flags().MarkDeprecated("json", "use --format json")
	return cmd
}

// eventView is an event as --format json prints it.
type eventView struct {
	Timestamp *time.Time      `json:"timestamp"`
	Namespace string          `json:"namespace"`
	Topic     string          `json:"topic"`
	Event     json.RawMessage `json:"event"`
}

func eventLine(v eventView) string {
	ts := "-"
	if v.Timestamp != nil {
		ts = v.Timestamp.Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("%s %s %s %s", ts, v.Namespace, v.Topic, v.Event)
}

// payload is an event's payload as JSON; {} when it is absent or of a
// type this program does not know.
func payload(event *anypb.Any, protoNames bool) json.RawMessage {
	if event != nil {
		if m, err := event.UnmarshalNew(); err == nil {
			if b, err := messageJSON(m.ProtoReflect(), protoNames); err == nil {
				return b
			}
		}
	}
	return json.RawMessage("{}")
}

func pluginsCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "plugins", Aliases: []string{"plugin"}, Short: "the daemon's services and their status"}
	var out outputFlags
	ls := &cobra.Command{
		Use:     "ls [FILTER...]",
		Aliases: []string{"list"},
		Short:   "list the daemon's services",
		Long:    `ls lists TYPE, ID and STATUS. Filter fields: type, id, status.`,
		Example: `  berthctl plugins ls 'status==error'
  berthctl plugins ls --format '{{.id}} {{json .exports}}'`,
		RunE: g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
			views, err := pluginViews(ctx, c, args...)
			if err != nil {
				return err
			}
			return printList(cmd, &out, views, columns[pluginView]{
				headers: []string{"TYPE", "ID", "STATUS"},
				row: func(v pluginView) []any {
					status := v.Status
					if v.Error != "" {
						status += ": " + v.Error
					}
					return []any{v.Type, v.ID, status}
				},
				id: func(v pluginView) string { return v.ID },
			})
		}),
	}
	out.register(ls)
	cmd.AddCommand(ls)
	return cmd
}

// pluginView is one of the daemon's services as --format json prints it.
type pluginView struct {
	Type    string            `json:"type"`
	ID      string            `json:"id"`
	Status  string            `json:"status"`
	Error   string            `json:"error"`
	Exports map[string]string `json:"exports"`
}

// pluginViews lists the daemon's services that match filters.
func pluginViews(ctx context.Context, c *client.Client, filters ...string) ([]pluginView, error) {
	resp, err := c.IntrospectionService().Services(ctx, &introspectionv1.ServicesRequest{Filters: filters})
	if err != nil {
		return nil, err
	}
	views := make([]pluginView, len(resp.Services))
	for i, s := range resp.Services {
		views[i] = pluginView{Type: s.Type, ID: s.Id, Status: s.Status, Error: s.Error, Exports: nonNilLabels(s.Exports)}
	}
	return views, nil
}

func versionCommand(g *globals) *cobra.Command {
	var out outputFlags
	cmd := &cobra.Command{
		Use:   "version",
		Short: "print the client's version and, when reachable, the daemon's",
		Example: `  berthctl version
  berthctl version --format '{{.server.version}}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := versionView{Client: clientVersion{Version: versionString()}}
			w := cmd.OutOrStdout()
			if out.format.isTable() {
				// The client's part first: it is printed when the daemon
				// is out of reach too.
				fmt.Fprintf(w, "Client:\n  Version: %s\n", v.Client.Version)
			}
			c, ctx, err := g.connect(cmd)
			if err == nil {
				defer c.Close()
				ctx, cancel := g.call(ctx)
				defer cancel()
				var sv *versionResponse
				sv, err = serverVersion(ctx, c)
				v.Server = sv
				err = hint(err, g.address)
			}
			if out.format.isTable() {
				if v.Server != nil {
					fmt.Fprintf(w, "Server:\n  Version: %s\n  Revision: %s\n  Go: %s\n", v.Server.Version, orDash(v.Server.Revision), v.Server.GoVersion)
				}
				return err
			}
			// A script gets the client's part, and server null, when the
			// daemon is out of reach; the exit code says so.
			return errors.Join(printObject(cmd, &out, v, nil), err)
		},
	}
	out.registerFormat(cmd)
	return cmd
}

// versionView is what version prints with --format json.
type versionView struct {
	Client clientVersion    `json:"client"`
	Server *versionResponse `json:"server"`
}

type clientVersion struct {
	Version string `json:"version"`
}

// versionResponse is the daemon's build, as the version API names it.
type versionResponse struct {
	Version   string `json:"version"`
	Revision  string `json:"revision"`
	GoVersion string `json:"go_version"`
}

func serverVersion(ctx context.Context, c *client.Client) (*versionResponse, error) {
	v, err := c.VersionService().Version(ctx, &emptypb.Empty{})
	if err != nil {
		return nil, err
	}
	return &versionResponse{Version: v.Version, Revision: v.Revision, GoVersion: v.GoVersion}, nil
}
