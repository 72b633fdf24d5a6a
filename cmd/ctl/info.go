package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/snapshots"
)

// Introspection types of the daemon's parts that info summarises.
const (
	snapshotterType = "berth.snapshotter.v1"
	serviceType     = "berth.service.v1"
)

// infoCommand is `info`: the daemon, its parts and what the namespace
// stores, as far as the API tells.
func infoCommand(g *globals) *cobra.Command {
	var out outputFlags
	cmd := &cobra.Command{
		Use:   "info",
		Short: "print the daemon's version, parts, settings and the namespace's storage use",
		Long: `info asks the daemon who it is (version, pid, start, root and state
folders), lists its services (plugins ls) with the settings they export, and
sums what the namespace of -n stores: blobs of the content store (count and
bytes), snapshots of each snapshotter (count, and the bytes and inodes that
each takes of its own, by the snapshotter's Usage), images, containers and
leases.`,
		Example: `  berthctl info
  berthctl -n ci info --format '{{.storage.content.bytes}}'`,
		Args: cobra.NoArgs,
		RunE: g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, _ []string) error {
			v, err := serverInfo(ctx, c, g.namespace)
			if err != nil {
				return hint(err, g.address)
			}
			return printObject(cmd, &out, v, writeInfo)
		}),
	}
	out.registerFormat(cmd)
	return cmd
}

// infoView is what info prints with --format json.
type infoView struct {
	Server             serverView   `json:"server"`
	DefaultSnapshotter string       `json:"default_snapshotter"`
	Plugins            []pluginView `json:"plugins"`
	Storage            storageView  `json:"storage"`
}

// serverView joins the version and introspection APIs' views of the
// daemon.
type serverView struct {
	versionResponse
	UUID      string     `json:"uuid"`
	Pid       uint64     `json:"pid"`
	StartedAt *time.Time `json:"started_at"`
	Root      string     `json:"root"`
	State     string     `json:"state"`
}

// storageView is what one namespace stores.
type storageView struct {
	Namespace  string          `json:"namespace"`
	Content    contentUsage    `json:"content"`
	Snapshots  []snapshotUsage `json:"snapshots"`
	Images     int             `json:"images"`
	Containers int             `json:"containers"`
	Leases     int             `json:"leases"`
}

type contentUsage struct {
	Blobs int   `json:"blobs"`
	Bytes int64 `json:"bytes"`
}

// snapshotUsage sums one snapshotter's snapshots; Error says why it could
// not, and the sums are then those of the snapshots counted before.
type snapshotUsage struct {
	Snapshotter string `json:"snapshotter"`
	Snapshots   int    `json:"snapshots"`
	Bytes       int64  `json:"bytes"`
	Inodes      int64  `json:"inodes"`
	Error       string `json:"error,omitempty"`
}

// serverInfo asks the daemon what info prints.
func serverInfo(ctx context.Context, c *client.Client, namespace string) (infoView, error) {
	v := infoView{Storage: storageView{Namespace: namespace, Snapshots: []snapshotUsage{}}}
	sv, err := serverVersion(ctx, c)
	if err != nil {
		return v, err
	}
	srv, err := c.Server(ctx)
	if err != nil {
		return v, err
	}
	v.Server = serverView{
		versionResponse: *sv, UUID: srv.UUID, Pid: srv.Pid, StartedAt: utcTime(srv.StartedAt),
		Root: srv.Root, State: srv.State,
	}
	if v.Plugins, err = pluginViews(ctx, c); err != nil {
		return v, err
	}
	for _, p := range v.Plugins {
		if p.Type == serviceType && p.ID == "snapshots" {
			v.DefaultSnapshotter = p.Exports["default"]
		}
	}

	st := &v.Storage
	blobs, err := blobViews(ctx, c.ContentStore())
	if err != nil {
		return v, err
	}
	for _, b := range blobs {
		st.Content.Blobs++
		st.Content.Bytes += b.Size
	}
	for _, p := range v.Plugins {
		if p.Type == snapshotterType && p.Status == "ok" {
			st.Snapshots = append(st.Snapshots, snapshotterUsage(ctx, c.SnapshotService(p.ID), p.ID))
		}
	}
	images, err := c.ImageService().List(ctx)
	if err != nil {
		return v, err
	}
	st.Images = len(images)
	ctrs, err := c.ListContainerInfos(ctx)
	if err != nil {
		return v, err
	}
	st.Containers = len(ctrs)
	leases, err := c.LeasesService().List(ctx)
	if err != nil {
		return v, err
	}
	st.Leases = len(leases)
	return v, nil
}

// snapshotterUsage sums the Usage of every snapshot of sn; a snapshot
// removed during the walk is passed over.
func snapshotterUsage(ctx context.Context, sn snapshots.Snapshotter, name string) snapshotUsage {
	u := snapshotUsage{Snapshotter: name}
	var sum snapshots.Usage
	err := sn.Walk(ctx, func(ctx context.Context, info snapshots.Info) error {
		su, err := sn.Usage(ctx, info.Name)
		if err != nil {
			return fmt.Errorf("snapshot %q: %w", info.Name, err)
		}
		sum.Add(su)
		u.Snapshots++
		return nil
	})
	if err != nil {
		u.Error = err.Error()
	}
	u.Bytes, u.Inodes = sum.Size, sum.Inodes
	return u
}

// writeInfo is info's table: the facts a person looks for first.
func writeInfo(w io.Writer, v infoView) error {
	now := time.Now()
	t := newTable(w)
	s := v.Server
	t.row("Server:")
	t.row("  Version:", fmt.Sprintf("%s (revision %s, %s)", s.Version, orDash(s.Revision), s.GoVersion))
	t.row("  UUID:", s.UUID)
	t.row("  PID:", s.Pid)
	started := "-"
	if s.StartedAt != nil {
		started = fmt.Sprintf("%s (up %s)", s.StartedAt.Local().Format(time.RFC3339), humanDuration(now.Sub(*s.StartedAt)))
	}
	t.row("  Started:", started)
	t.row("  Root:", s.Root)
	t.row("  State:", s.State)

	var snapshotters, failed []string
	settings := map[string]string{}
	for _, p := range v.Plugins {
		if p.Type == snapshotterType {
			snapshotters = append(snapshotters, p.ID)
		}
		if p.Status != "ok" {
			failed = append(failed, p.ID+": "+p.Error)
		}
		for k, val := range p.Exports {
			settings[p.ID+"."+k] = val
		}
	}
	t.row("Plugins:", fmt.Sprintf("%d, %d not ok", len(v.Plugins), len(failed)))
	for _, f := range failed {
		t.row("  ", f)
	}
	t.row("Snapshotters:", fmt.Sprintf("%s (default %s)", strings.Join(snapshotters, ", "), orDash(v.DefaultSnapshotter)))
	t.row("Settings:")
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		t.row("  "+k+":", settings[k])
	}

	st := v.Storage
	t.row(fmt.Sprintf("Storage (namespace %s):", st.Namespace))
	t.row("  Content:", fmt.Sprintf("%d blobs, %s", st.Content.Blobs, humanSize(st.Content.Bytes)))
	for _, u := range st.Snapshots {
		line := fmt.Sprintf("%d snapshots, %s, %d inodes", u.Snapshots, humanSize(u.Bytes), u.Inodes)
		if u.Error != "" {
			line += " (incomplete: " + u.Error + ")"
		}
		t.row("  Snapshots "+u.Snapshotter+":", line)
	}
	t.row("  Images:", st.Images)
	t.row("  Containers:", st.Containers)
	t.row("  Leases:", st.Leases)
	return t.flush()
}
