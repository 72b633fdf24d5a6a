package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/berthrt/berth/client"
	containersv1 "github.com/berthrt/berth/proto/containers/v1"
)

func containersCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "containers", Aliases: []string{"container", "c"}, Short: "manage containers (metadata; see tasks for running ones)"}
	var cf containerFlags
	var imf imageFlags
	create := &cobra.Command{
		Use:   "create [FLAGS] IMAGE ID [CMD...] | create --rootfs DIR [FLAGS] ID [CMD...]",
		Short: "create a container",
		Example: `  berthctl containers create --snapshotter native busybox web httpd -f
  berthctl containers create --rootfs /tmp/busybox --env A=1 web httpd -f`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, err := g.connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = newContainer(ctx, c, &cf, &imf, args)
			return err
		},
	}
	cf.register(create)
	imf.register(create)

	var quiet bool
	ls := &cobra.Command{
		Use:     "ls [FILTER...]",
		Aliases: []string{"list"},
		Short:   "list containers",
		Example: `  berthctl containers ls 'labels.role==web'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, err := g.connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.ContainerService().List(ctx, &containersv1.ListContainersRequest{Filters: args})
			if err != nil {
				return err
			}
			if quiet {
				for _, ct := range resp.Containers {
					fmt.Fprintln(cmd.OutOrStdout(), ct.Id)
				}
				return nil
			}
			t := newTable(cmd.OutOrStdout(), "CONTAINER", "IMAGE", "RUNTIME", "LABELS")
			for _, ct := range resp.Containers {
				image := ct.Image
				if image == "" {
					image = "-"
				}
				t.row(ct.Id, image, ct.GetRuntime().GetName(), formatLabels(ct.Labels))
			}
			return t.flush()
		},
	}
	ls.Flags().BoolVarP(&quiet, "quiet", "q", false, "print ids only")

	info := &cobra.Command{
		Use:     "info ID",
		Short:   "print a container as JSON, its spec decoded",
		Example: `  berthctl containers info web`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, err := g.connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.ContainerService().Get(ctx, &containersv1.GetContainerRequest{Id: args[0]})
			if err != nil {
				return err
			}
			ct := resp.Container
			out := map[string]any{
				"id": ct.Id, "labels": ct.Labels, "image": ct.Image,
				"runtime":     map[string]any{"name": ct.GetRuntime().GetName()},
				"snapshotter": ct.Snapshotter, "snapshot_key": ct.SnapshotKey,
				"created_at": ct.CreatedAt.AsTime(), "updated_at": ct.UpdatedAt.AsTime(),
				"spec": json.RawMessage(ct.Spec),
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(out)
		},
	}

	rm := &cobra.Command{
		Use:     "rm ID...",
		Aliases: []string{"remove", "delete", "del"},
		Short:   "remove containers that have no task",
		Example: `  berthctl containers rm web`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, err := g.connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			var failed error
			for _, id := range args {
				if _, err := c.ContainerService().Delete(ctx, &containersv1.DeleteContainerRequest{Id: id}); err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), "berthctl:", err)
					failed = fmt.Errorf("some containers were not removed")
				}
			}
			return failed
		},
	}

	label := labelCommand(g, "container", `  berthctl containers label web role=frontend owner=`, labelFuncs{
		get: func(ctx context.Context, c *client.Client, id string) (map[string]string, error) {
			resp, err := c.ContainerService().Get(ctx, &containersv1.GetContainerRequest{Id: id})
			if err != nil {
				return nil, err
			}
			return resp.Container.Labels, nil
		},
		update: func(ctx context.Context, c *client.Client, id string, set map[string]string, paths []string) (map[string]string, error) {
			resp, err := c.ContainerService().Update(ctx, &containersv1.UpdateContainerRequest{
				Container:  &containersv1.Container{Id: id, Labels: set},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: paths},
			})
			if err != nil {
				return nil, err
			}
			return resp.Container.Labels, nil
		},
	})
	cmd.AddCommand(create, ls, info, rm, label)
	return cmd
}
