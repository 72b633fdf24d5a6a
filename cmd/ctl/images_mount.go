package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/platforms"
	"github.com/spf13/cobra"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/errdefs"
	imgplatform "github.com/berthrt/berth/images/platform"
	"github.com/berthrt/berth/leases"
	"github.com/berthrt/berth/mount"
	"github.com/berthrt/berth/unpack"
)

// mountTargetLabel is the label of an images mount's lease that gives
// the folder it mounted, for people reading `leases ls`.
const mountTargetLabel = "berth.io/mount.target"

// mountLeaseID names the lease of the images mount at target (an
// absolute, clean path): "mount-" and a hash of the path, since a lease
// id is an identifier and a path is not.
func mountLeaseID(target string) string {
	sum := sha256.Sum256([]byte(target))
	return "mount-" + hex.EncodeToString(sum[:16])
}

// mountTarget returns the absolute, clean path of a folder that exists.
func mountTarget(arg string) (string, error) {
	target, err := filepath.Abs(arg)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(target)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("target %s does not exist (make the folder first): %w", target, errdefs.ErrNotFound)
	case err != nil:
		return "", err
	case !fi.IsDir():
		return "", fmt.Errorf("target %s is not a folder: %w", target, errdefs.ErrInvalidArgument)
	}
	return target, nil
}

// requireRoot refuses what needs root, with what was asked.
func requireRoot(what string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%s: mounting needs root: %w", what, errdefs.ErrPermissionDenied)
	}
	return nil
}

func imageMountCommand(g *globals) *cobra.Command {
	var (
		snapshotter, platform string
		rw                    bool
	)
	cmd := &cobra.Command{
		Use:   "mount [--snapshotter S] [--rw] [--platform P] REF TARGET",
		Short: "mount an image's unpacked layers on the folder TARGET (read-only unless --rw); root only",
		Long: `Mount the image REF on TARGET, as ctr images mount does: a view of the
image's layers (with --rw a writable snapshot on top of them) in --snapshotter,
its key TARGET, held by a lease named after TARGET so that garbage collection
keeps it while it is mounted, then mounted on TARGET; prints TARGET.

The image must be unpacked in that snapshotter (images pull and images import
unpack into the daemon's default one; pass --snapshotter to them for another).
Undo with: berthctl images unmount --rm TARGET.`,
		Example: "  mkdir -p /mnt/app && berthctl images mount docker.io/library/busybox:latest /mnt/app\n  berthctl images mount --rw --snapshotter native app:1 /mnt/scratch",
		Args:    cobra.ExactArgs(2),
		RunE: g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
			var m platforms.MatchComparer
			if platform != "" {
				p, err := imgplatform.Parse(platform)
				if err != nil {
					return usageError{err}
				}
				m = platforms.Only(p)
			}
			if err := requireRoot("images mount"); err != nil {
				return err
			}
			target, err := mountTarget(args[1])
			if err != nil {
				return err
			}
			if err := mountImage(ctx, c, args[0], target, snapshotter, m, rw); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), target)
			return nil
		}),
	}
	fl := cmd.Flags()
	fl.StringVar(&snapshotter, "snapshotter", envOr("BERTH_SNAPSHOTTER", ""), "snapshotter the image is unpacked in (env BERTH_SNAPSHOTTER; default: the daemon's)")
	fl.BoolVar(&rw, "rw", false, "a writable snapshot instead of a read-only view")
	fl.StringVar(&platform, "platform", "", "platform os/arch[/variant] of the manifest whose layers are mounted (default linux/amd64)")
	return cmd
}

// mountImage makes the snapshot target (a view, or with rw an active
// snapshot) of the image ref's layers in snapshotter under the lease
// mountLeaseID(target), and mounts it on target. On failure it leaves
// neither the lease, the snapshot nor a mount.
func mountImage(ctx context.Context, c *client.Client, ref, target, snapshotter string, m platforms.MatchComparer, rw bool) (err error) {
	img, err := getImage(ctx, c, ref)
	if err != nil {
		return err
	}
	resolved, err := unpack.Resolve(ctx, c.ContentStore(), img.Target(), m)
	if err != nil {
		return fmt.Errorf("image %q: %w", img.Name(), err)
	}
	if snapshotter == "" {
		if snapshotter, err = c.DefaultSnapshotter(ctx); err != nil {
			return err
		}
	}
	sn := c.SnapshotService(snapshotter)
	parent := resolved.ChainID()
	if parent != "" {
		if _, err := sn.Stat(ctx, parent); errdefs.IsNotFound(err) {
			return fmt.Errorf("image %q is not unpacked in %s (berthctl images pull --snapshotter %s %s unpacks it): %w",
				img.Name(), snapshotter, snapshotter, img.Name(), err)
		} else if err != nil {
			return err
		}
	}

	id := mountLeaseID(target)
	ls := c.LeasesService()
	if _, err := ls.Create(ctx, leases.Lease{ID: id, Labels: map[string]string{mountTargetLabel: target}}); errdefs.IsAlreadyExists(err) {
		return fmt.Errorf("%s has the snapshot of an earlier images mount (lease %s); berthctl images unmount --rm %s first: %w", target, id, target, err)
	} else if err != nil {
		return err
	}
	cleanup := context.WithoutCancel(ctx)
	defer func() {
		if err != nil {
			if derr := c.DeleteLeaseSync(cleanup, id); derr != nil {
				err = errors.Join(err, fmt.Errorf("delete lease %s: %w", id, derr))
			}
		}
	}()
	lctx := leases.WithLease(ctx, id)
	create := sn.View
	if rw {
		create = sn.Prepare
	}
	mounts, err := create(lctx, target, parent)
	if err != nil {
		return err
	}
	if err := mount.All(mounts, target); err != nil {
		// The lease's delete collects the snapshot; its record goes
		// first, so that it does not outlive the lease.
		if rerr := sn.Remove(cleanup, target); rerr != nil {
			err = errors.Join(err, fmt.Errorf("remove snapshot %s: %w", target, rerr))
		}
		return fmt.Errorf("mount %s: %w", target, err)
	}
	return nil
}

func imageUnmountCommand(g *globals) *cobra.Command {
	var rm bool
	cmd := &cobra.Command{
		Use:   "unmount [--rm] TARGET",
		Short: "unmount what images mount mounted on TARGET; with --rm remove its snapshot and lease too",
		Long: `Unmount everything at and below TARGET. With --rm, also remove the snapshot
that images mount made for TARGET and its lease, and collect garbage, so the
snapshot's files are gone when the command returns (without --rm they stay,
written files included, until unmount --rm).`,
		Example: "  berthctl images unmount --rm /mnt/app\n  berthctl images unmount /mnt/scratch   # keeps the snapshot and its writes",
		Aliases: []string{"umount"},
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireRoot("images unmount"); err != nil {
				return err
			}
			target, err := mountTarget(args[0])
			if err != nil {
				return err
			}
			if err := mount.UnmountAll(target, 0); err != nil {
				return fmt.Errorf("unmount %s: %w", target, err)
			}
			if !rm {
				fmt.Fprintln(cmd.OutOrStdout(), target)
				return nil
			}
			// Only --rm needs the daemon.
			return g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, _ []string) error {
				if err := removeMountSnapshot(ctx, c, target); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), target)
				return nil
			})(cmd, args)
		},
	}
	cmd.Flags().BoolVar(&rm, "rm", false, "remove the snapshot and the lease of the mount too")
	return cmd
}

// removeMountSnapshot removes the snapshots the lease of the images
// mount at target holds (the snapshotter is the resource's type), then
// the lease, and waits for the collection that removes their files.
func removeMountSnapshot(ctx context.Context, c *client.Client, target string) error {
	id := mountLeaseID(target)
	ls := c.LeasesService()
	res, err := ls.ListResources(ctx, id)
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("no images mount at %s (no lease %s): %w", target, id, err)
	} else if err != nil {
		return err
	}
	for _, r := range res {
		name, ok := strings.CutPrefix(r.Type, leases.ResourceSnapshotPrefix)
		if !ok {
			continue
		}
		if err := c.SnapshotService(name).Remove(ctx, r.ID); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("remove snapshot %s of %s: %w", r.ID, name, err)
		}
	}
	return c.DeleteLeaseSync(ctx, id)
}
