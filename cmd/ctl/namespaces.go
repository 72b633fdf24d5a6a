package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/berthrt/berth/client"
	namespacesv1 "github.com/berthrt/berth/proto/namespaces/v1"
)

func namespacesCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "namespaces", Aliases: []string{"namespace", "ns"}, Short: "manage namespaces"}
	var out outputFlags
	ls := &cobra.Command{
		Use:     "ls [FILTER...]",
		Aliases: []string{"list"},
		Short:   "list namespaces",
		Long:    `ls lists NAME and LABELS. Filter fields: name, labels.<key>.`,
		Example: `  berthctl namespaces ls 'labels.team==ci'
  berthctl namespaces ls --format json`,
		RunE: g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
			nss, err := c.ListNamespaces(ctx, args...)
			if err != nil {
				return err
			}
			views := make([]namespaceView, len(nss))
			for i, ns := range nss {
				views[i] = namespaceView{Name: ns.Name, Labels: nonNilLabels(ns.Labels)}
			}
			return printList(cmd, &out, views, columns[namespaceView]{
				headers: []string{"NAME", "LABELS"},
				row:     func(v namespaceView) []any { return []any{v.Name, formatLabels(v.Labels)} },
				id:      func(v namespaceView) string { return v.Name },
			})
		}),
	}
	out.register(ls)
	cmd.AddCommand(ls, &cobra.Command{
		Use:     "create NAME [KEY=VALUE...]",
		Short:   "create a namespace",
		Example: `  berthctl namespaces create ci team=build`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			labels, err := parseLabels(args[1:])
			if err != nil {
				return err
			}
			return g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
				_, err := c.NamespaceService().Create(ctx, &namespacesv1.CreateNamespaceRequest{Namespace: &namespacesv1.Namespace{Name: args[0], Labels: labels}})
				return err
			})(cmd, args)
		},
	}, &cobra.Command{
		Use:     "rm NAME...",
		Aliases: []string{"remove", "delete"},
		Short:   "remove empty namespaces",
		Example: `  berthctl namespaces rm ci`,
		Args:    cobra.MinimumNArgs(1),
		RunE: g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
			var failed error
			for _, name := range args {
				if _, err := c.NamespaceService().Delete(ctx, &namespacesv1.DeleteNamespaceRequest{Name: name}); err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), "berthctl:", err)
					failed = fmt.Errorf("some namespaces were not removed")
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), name)
			}
			return failed
		}),
	}, labelCommand(g, "namespace", `  berthctl namespaces label ci team=build owner=`, labelFuncs{
		get: func(ctx context.Context, c *client.Client, name string) (map[string]string, error) {
			resp, err := c.NamespaceService().Get(ctx, &namespacesv1.GetNamespaceRequest{Name: name})
			if err != nil {
				return nil, err
			}
			return resp.Namespace.Labels, nil
		},
		update: func(ctx context.Context, c *client.Client, name string, set map[string]string, paths []string) (map[string]string, error) {
			resp, err := c.NamespaceService().Update(ctx, &namespacesv1.UpdateNamespaceRequest{
				Namespace:  &namespacesv1.Namespace{Name: name, Labels: set},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: paths},
			})
			if err != nil {
				return nil, err
			}
			return resp.Namespace.Labels, nil
		},
	}))
	return cmd
}

// namespaceView is a namespace as --format json prints it.
type namespaceView struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels"`
}
