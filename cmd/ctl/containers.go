package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

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
		RunE: g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
			_, err := newContainer(ctx, c, &cf, &imf, args)
			return err
		}),
	}
	cf.register(create)
	imf.register(create)

	var lsOut outputFlags
	ls := &cobra.Command{
		Use:     "ls [FILTER...]",
		Aliases: []string{"list"},
		Short:   "list containers",
		Long: `ls lists CONTAINER, IMAGE, RUNTIME, CREATED and LABELS. Filter fields: id,
image, runtime.name, snapshotter, labels.<key>.`,
		Example: `  berthctl containers ls 'labels.role==web'
  berthctl containers ls --format '{{.id}} {{.image}}'`,
		RunE: g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
			infos, err := c.ListContainerInfos(ctx, args...)
			if err != nil {
				return err
			}
			views := make([]containerView, len(infos))
			for i, ct := range infos {
				views[i] = newContainerView(ct)
			}
			now := time.Now()
			return printList(cmd, &lsOut, views, columns[containerView]{
				headers: []string{"CONTAINER", "IMAGE", "RUNTIME", "CREATED", "LABELS"},
				row: func(v containerView) []any {
					return []any{v.ID, orDash(v.Image), v.Runtime.Name, agoOf(now, v.CreatedAt), formatLabels(v.Labels)}
				},
				id: func(v containerView) string { return v.ID },
			})
		}),
	}
	lsOut.register(ls)

	var infoOut outputFlags
	info := &cobra.Command{
		Use:   "info ID",
		Short: "print a container as JSON, its spec decoded",
		Long: `info prints the container's record as JSON, by default too (its OCI spec
does not fit a table): the fields of --format json, the spec as an object.`,
		Example: `  berthctl containers info web
  berthctl containers info --format '{{.spec.process.args}}' web`,
		Args: cobra.ExactArgs(1),
		RunE: g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
			ctr, err := c.LoadContainer(ctx, args[0])
			if err != nil {
				return err
			}
			info, err := ctr.Info(ctx)
			if err != nil {
				return err
			}
			return printObject(cmd, &infoOut, newContainerView(info), func(w io.Writer, v containerView) error {
				return writeJSON(w, v)
			})
		}),
	}
	infoOut.registerFormat(info)

	var keepSnapshot bool
	rm := &cobra.Command{
		Use:     "rm ID...",
		Aliases: []string{"remove", "delete", "del"},
		Short:   "remove containers that have no task, with their snapshots",
		Example: `  berthctl containers rm web
  berthctl containers rm --keep-snapshot web   # then: berthctl snapshots commit …`,
		Args: cobra.MinimumNArgs(1),
		RunE: g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
			var opts []client.DeleteOpts
			if !keepSnapshot {
				opts = append(opts, client.WithSnapshotCleanup)
			}
			var failed error
			for _, id := range args {
				ctr, err := c.LoadContainer(ctx, id)
				if err == nil {
					err = ctr.Delete(ctx, opts...)
				}
				if err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), "berthctl:", err)
					failed = fmt.Errorf("some containers were not removed")
				}
			}
			return failed
		}),
	}
	rm.Flags().BoolVar(&keepSnapshot, "keep-snapshot", false, "keep the container's snapshot (by default it is removed with the container)")

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
	cmd.AddCommand(create, ls, info, rm, label, containersCommitCommand(g))
	return cmd
}

// containerView is a container as --format json prints it: the fields of
// the containers API, its spec as JSON.
type containerView struct {
	ID          string            `json:"id"`
	Labels      map[string]string `json:"labels"`
	Image       string            `json:"image"`
	Runtime     runtimeView       `json:"runtime"`
	Spec        json.RawMessage   `json:"spec"`
	Snapshotter string            `json:"snapshotter"`
	SnapshotKey string            `json:"snapshot_key"`
	CreatedAt   *time.Time        `json:"created_at"`
	UpdatedAt   *time.Time        `json:"updated_at"`
}

// runtimeView names a container's runtime; its options (a typed message
// for the runtime) are not printed.
type runtimeView struct {
	Name string `json:"name"`
}

func newContainerView(ct client.ContainerInfo) containerView {
	v := containerView{
		ID: ct.ID, Labels: nonNilLabels(ct.Labels), Image: ct.Image,
		Runtime:     runtimeView{Name: ct.Runtime.Name},
		Snapshotter: ct.Snapshotter, SnapshotKey: ct.SnapshotKey,
		CreatedAt: utcTime(ct.CreatedAt), UpdatedAt: utcTime(ct.UpdatedAt),
	}
	if json.Valid(ct.Spec) {
		v.Spec = ct.Spec
	}
	return v
}
