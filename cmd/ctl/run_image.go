package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

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
// command line: from --rootfs, else from its IMAGE.
func newContainer(ctx context.Context, c *client.Client, cf *containerFlags, f *imageFlags, args []string) (client.Container, error) {
	image, id, cmd, err := containerArgs(cf, args)
	if err != nil {
		return nil, err
	}
	if err := cf.check(); err != nil {
		return nil, err
	}
	var img []client.NewContainerOpts
	var imgSpec []oci.SpecOpts
	prepared := false // set once the container's snapshot exists
	if image != "" {
		o, spec, err := f.imageOpts(ctx, c, cf, image, id, &prepared)
		if err != nil {
			return nil, err
		}
		img, imgSpec = o, []oci.SpecOpts{spec}
	}
	opts, err := cf.containerOpts(cmd, img, imgSpec...)
	if err != nil {
		return nil, err
	}
	ctr, err := c.NewContainer(ctx, id, opts...)
	if err != nil && prepared {
		// No task can have mounted the snapshot: it did not exist before
		// this command, and its container was not made.
		if rerr := c.SnapshotService(f.snapshotter).Remove(ctx, id); rerr != nil && !errdefs.IsNotFound(rerr) {
			err = errors.Join(err, fmt.Errorf("remove snapshot %q: %w", id, rerr))
		}
	}
	return ctr, err
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

// imageOpts returns the options of a container id made from image: the
// image's name and a new snapshot (a view with --read-only), and the spec
// option of the image's config, which the flags' spec options follow.
// The snapshot option sets *prepared once it has made the snapshot, so
// that only a snapshot this command made is removed when the create
// fails (not one of that name that was there before).
func (f *imageFlags) imageOpts(ctx context.Context, c *client.Client, cf *containerFlags, image, id string, prepared *bool) ([]client.NewContainerOpts, oci.SpecOpts, error) {
	if f.snapshotter == "" {
		// The daemon's default: the one its pulls and imports unpack into.
		name, err := c.DefaultSnapshotter(ctx)
		if err != nil {
			return nil, nil, err
		}
		f.snapshotter = name
	}
	pullOpts, err := f.pullOpts()
	if err != nil {
		return nil, nil, err
	}
	var img *client.Image
	if f.pull != pullAlways {
		img, err = getImage(ctx, c, image)
	}
	if f.pull == pullAlways || (errdefs.IsNotFound(err) && f.pull == pullMissing) {
		if img, err = c.Pull(ctx, image, pullOpts...); err != nil {
			return nil, nil, fmt.Errorf("pull %s: %w", image, err)
		}
	}
	if errdefs.IsNotFound(err) {
		return nil, nil, imageNotFound(ctx, image)
	}
	if err != nil {
		return nil, nil, err
	}
	newSnapshot := client.WithNewSnapshot(id, img)
	if cf.readOnly {
		newSnapshot = client.WithNewSnapshotView(id, img)
	}
	snapshot := func(ctx context.Context, c *client.Client, info *client.ContainerInfo) error {
		if err := newSnapshot(ctx, c, info); err != nil {
			return err
		}
		*prepared = true
		return nil
	}
	return []client.NewContainerOpts{client.WithImage(img), client.WithSnapshotter(f.snapshotter), snapshot}, oci.WithImageConfig(img), nil
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
