package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/namespaces"
	"github.com/berthrt/berth/oci"
)

// imageFlags are the flags of `run` and `containers create` for a
// container made from an image (when --rootfs is not given).
type imageFlags struct {
	snapshotter string
	pull        string // one of the pull* policies
	platform    string
	remote      remoteFlags // of the pull: --plain-http and --hosts-dir
}

// When run and containers create pull IMAGE.
const (
	pullNever   = "never"   // use what the daemon has (the default)
	pullMissing = "missing" // pull when the daemon does not have it (--pull)
	pullAlways  = "always"  // pull every time, to pick up a moved tag
)

func (f *imageFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.snapshotter, "snapshotter", envOr("BERTH_SNAPSHOTTER", ""), "snapshotter of the container's snapshot, without --rootfs (env BERTH_SNAPSHOTTER; default: the daemon's)")
	fl.StringVar(&f.pull, "pull", pullNever, "pull IMAGE (and unpack it) first: never, missing (--pull alone) or always")
	fl.Lookup("pull").NoOptDefVal = pullMissing
	fl.StringVar(&f.platform, "platform", "", "platform os/arch[/variant] that --pull fetches (default linux/amd64)")
	fl.BoolVar(&f.remote.plainHTTP, "plain-http", false, "--pull reaches a registry without a hosts.toml over plain HTTP")
	fl.StringVar(&f.remote.hostsDir, "hosts-dir", "", "hosts.toml folder (DIR/HOST[:PORT]/hosts.toml) of --pull")
}

// pullOpts checks the flags of a pull and returns its options.
func (f *imageFlags) pullOpts() ([]client.RemoteOpt, error) {
	switch f.pull {
	case pullNever, pullMissing, pullAlways:
	default:
		return nil, usageError{fmt.Errorf("--pull %q: want never, missing or always", f.pull)}
	}
	if f.platform != "" {
		f.remote.platforms = []string{f.platform}
	}
	opts, err := f.remote.opts(nil, nil) // no --user: no password to ask
	if err != nil {
		return nil, err
	}
	return append(opts, client.WithPullUnpack, client.WithPullSnapshotter(f.snapshotter)), nil
}

// newContainer creates the container of a `run` or `containers create`
// command line: from --rootfs, else from its IMAGE. A container from an
// image gets its snapshot in the same call (client.WithNewSnapshot): the
// daemon makes both at once, so no lease is needed and a failed create
// leaves no snapshot behind.
func newContainer(ctx context.Context, c *client.Client, cf *containerFlags, f *imageFlags, args []string) (client.Container, error) {
	image, id, cmd, err := containerArgs(cf, args)
	if err != nil {
		return nil, err
	}
	if err := cf.check(); err != nil {
		return nil, err
	}
	if image == "" {
		opts, err := cf.containerOpts(cmd, nil)
		if err != nil {
			return nil, err
		}
		return c.NewContainer(ctx, id, opts...)
	}
	img, snapshotter, err := f.imageAndSnapshotter(ctx, c, image)
	if err != nil {
		return nil, err
	}
	opts, err := cf.containerOpts(cmd, imageOpts(cf, img, snapshotter, id), oci.WithImageConfig(img))
	if err != nil {
		return nil, err
	}
	return c.NewContainer(ctx, id, opts...)
}

// imageAndSnapshotter returns the image of a command line (pulled as
// --pull says, under the pull's own lease), read (its manifest and
// config, which the container's snapshot and spec need), and the
// snapshotter of --snapshotter or else the daemon's default. The two do
// not depend on each other: asked at once over the one connection, the
// snapshotter costs no wait of its own beside the image's round trips.
func (f *imageFlags) imageAndSnapshotter(ctx context.Context, c *client.Client, image string) (_ *client.Image, snapshotter string, _ error) {
	pullOpts, err := f.pullOpts()
	if err != nil {
		return nil, "", err
	}
	var img *client.Image
	snapshotter = f.snapshotter
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		if img, err = f.image(gctx, c, image, pullOpts); err != nil {
			return err
		}
		// Read now, kept by img for the snapshot and the spec.
		if _, err := img.ChainID(gctx); err != nil {
			return fmt.Errorf("image %s: %w", image, err)
		}
		return nil
	})
	if snapshotter == "" {
		g.Go(func() (err error) {
			snapshotter, err = c.DefaultSnapshotter(gctx)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, "", err
	}
	return img, snapshotter, nil
}

// image returns the image named image, pulled first as --pull says.
func (f *imageFlags) image(ctx context.Context, c *client.Client, image string, pullOpts []client.RemoteOpt) (*client.Image, error) {
	var (
		img *client.Image
		err error
	)
	if f.pull != pullAlways {
		img, err = getImage(ctx, c, image)
	}
	if f.pull == pullAlways || (errdefs.IsNotFound(err) && f.pull == pullMissing) {
		if img, err = c.Pull(ctx, image, pullOpts...); err != nil {
			return nil, fmt.Errorf("pull %s: %w", image, err)
		}
	}
	if errdefs.IsNotFound(err) {
		return nil, imageNotFound(ctx, image)
	}
	return img, err
}

// containerArgs splits a command line into the image ("" with --rootfs),
// the container's id and its command.
func containerArgs(cf *containerFlags, args []string) (image, id string, cmd []string, err error) {
	if cf.rootfs != "" {
		return "", args[0], args[1:], nil
	}
	if len(args) < 2 {
		return "", "", nil, usageError{fmt.Errorf("IMAGE ID [CMD...] (or --rootfs DIR ID [CMD...])")}
	}
	return args[0], args[1], args[2:], nil
}

// imageOpts returns the options of a container id made from img: the
// image's name, the snapshotter and a new snapshot (a view with
// --read-only), which the daemon makes with the container.
func imageOpts(cf *containerFlags, img *client.Image, snapshotter, id string) []client.NewContainerOpts {
	newSnapshot := client.WithNewSnapshot(id, img)
	if cf.readOnly {
		newSnapshot = client.WithNewSnapshotView(id, img)
	}
	return []client.NewContainerOpts{client.WithImage(img), client.WithSnapshotter(snapshotter), newSnapshot}
}

// getImage returns the image named name, else the image its normalised
// reference names ("busybox" is docker.io/library/busybox:latest), as
// pull and import name images.
func getImage(ctx context.Context, c *client.Client, name string) (*client.Image, error) {
	img, err := c.GetImage(ctx, name)
	if !errdefs.IsNotFound(err) {
		return img, err
	}
	r, perr := normalizeRef(name)
	if perr != nil || r == name {
		return nil, err
	}
	if img, nerr := c.GetImage(ctx, r); nerr == nil || !errdefs.IsNotFound(nerr) {
		return img, nerr
	}
	return nil, err
}

// imageNotFound is the error of a missing image, with the command that
// gets it: "image X not found in namespace N: pull it with …".
func imageNotFound(ctx context.Context, image string) error {
	ns, _ := namespaces.Namespace(ctx)
	pull := "berthctl images pull " + image
	if ns != namespaces.Default {
		pull = fmt.Sprintf("berthctl -n %s images pull %s", ns, image)
	}
	return fmt.Errorf("image %s %w in namespace %s: pull it with `%s` (or pass --pull)", image, errdefs.ErrNotFound, ns, pull)
}
