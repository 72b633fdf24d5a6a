package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/console"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/images"
	"github.com/berthrt/berth/images/archive/archiveopts"
	imgplatform "github.com/berthrt/berth/images/platform"
)

func imagesCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "images", Aliases: []string{"image", "i"}, Short: "pull, push, list and manage images"}
	cmd.AddCommand(
		imagePullCommand(g),
		imagePushCommand(g),
		imageListCommand(g),
		imageRemoveCommand(g),
		imageTagCommand(g),
		imageLabelCommand(g),
		imageCheckCommand(g),
		imageImportCommand(g),
		imageConvertCommand(g),
		imageExportCommand(g),
		imageMountCommand(g),
		imageUnmountCommand(g),
	)
	return cmd
}

// remoteFlags are the flags of pull and push.
type remoteFlags struct {
	platforms []string
	all       bool
	plainHTTP bool
	user      string
	hostsDir  string
}

func (f *remoteFlags) register(cmd *cobra.Command, all bool) {
	fl := cmd.Flags()
	fl.StringArrayVar(&f.platforms, "platform", nil, "platform os/arch[/variant] (repeatable; default linux/amd64)")
	if all {
		fl.BoolVar(&f.all, "all-platforms", false, "every platform of an index")
	}
	fl.BoolVar(&f.plainHTTP, "plain-http", false, "reach a registry without a hosts.toml over plain HTTP")
	fl.StringVarP(&f.user, "user", "u", "", "registry credentials USER[:PASSWORD]; the password is asked for when left out")
	fl.StringVar(&f.hostsDir, "hosts-dir", "", "hosts.toml folder (DIR/HOST[:PORT]/hosts.toml) the daemon reads instead of its [registry] config_path")
}

func (f *remoteFlags) opts(in io.Reader, prompt io.Writer) ([]client.RemoteOpt, error) {
	var opts []client.RemoteOpt
	if f.all && len(f.platforms) > 0 {
		return nil, usageError{errors.New("--platform and --all-platforms together")}
	}
	for _, p := range f.platforms {
		if _, err := imgplatform.Parse(p); err != nil {
			return nil, usageError{err}
		}
	}
	if len(f.platforms) > 0 {
		opts = append(opts, client.WithPlatforms(f.platforms...))
	}
	if f.all {
		opts = append(opts, client.WithAllPlatforms())
	}
	if f.plainHTTP {
		opts = append(opts, client.WithPlainHTTP())
	}
	if f.hostsDir != "" {
		// The daemon runs on this host: a relative folder is this
		// process's.
		dir, err := filepath.Abs(f.hostsDir)
		if err != nil {
			return nil, err
		}
		opts = append(opts, client.WithHostsDir(dir))
	}
	if f.user != "" {
		user, password, ok := strings.Cut(f.user, ":")
		if !ok {
			var err error
			if password, err = readPassword(in, prompt, user); err != nil {
				return nil, err
			}
		}
		opts = append(opts, client.WithCredentials(user, password))
	}
	return opts, nil
}

// readPassword reads user's password from in: without echo from a
// terminal, else its first line.
func readPassword(in io.Reader, prompt io.Writer, user string) (string, error) {
	if f, ok := in.(*os.File); ok {
		if con, err := console.ConsoleFromFile(f); err == nil {
			fmt.Fprintf(prompt, "password for %s: ", user)
			if err := con.DisableEcho(); err != nil {
				return "", err
			}
			defer func() {
				con.Reset()
				fmt.Fprintln(prompt)
			}()
		}
	}
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && (err != io.EOF || line == "") {
		return "", fmt.Errorf("read the password of %s: %w", user, err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func imagePullCommand(g *globals) *cobra.Command {
	var f remoteFlags
	var noUnpack bool
	var snapshotter string
	cmd := &cobra.Command{
		Use:   "pull [flags] REF",
		Short: "fetch an image from a registry into the daemon",
		Long: `pull has the daemon fetch REF (busybox is docker.io/library/busybox:latest)
and record it as an image. Progress goes to stdout: a line per blob redrawn
in place on a terminal, a line per change of a blob's status otherwise; the
last line is "NAME DIGEST". Registry settings (mirrors, TLS) come from the
hosts.toml folder of --hosts-dir, else the daemon's [registry] config_path.
The layers (of the first --platform's manifest, else linux/amd64's) are
then unpacked into --snapshotter (the daemon's default when not given), so
that "berthctl run" can start containers from the image; --no-unpack only
fetches.`,
		Example: `  berthctl images pull busybox
  berthctl images pull --platform linux/arm64 --plain-http 127.0.0.1:5000/app:1.0
  berthctl images pull --user ci:secret registry.example/app@sha256:…`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := f.opts(cmd.InOrStdin(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			switch {
			case noUnpack && snapshotter != "":
				return usageError{errors.New("--snapshotter and --no-unpack together")}
			case !noUnpack:
				opts = append(opts, client.WithPullUnpack)
				if snapshotter != "" {
					opts = append(opts, client.WithPullSnapshotter(snapshotter))
				}
			}
			return g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
				d := newProgressDisplay(cmd.OutOrStdout())
				start := time.Now()
				img, err := c.Pull(ctx, args[0], append(opts, client.WithPullProgress(d.update))...)
				d.finish()
				if err != nil {
					return err
				}
				if d.live {
					fmt.Fprintf(cmd.OutOrStdout(), "pulled in %.1fs\n", time.Since(start).Seconds())
				}
				fmt.Fprintln(cmd.OutOrStdout(), img.Name(), img.Target().Digest)
				return nil
			})(cmd, args)
		},
	}
	f.register(cmd, true)
	cmd.Flags().BoolVar(&noUnpack, "no-unpack", false, "fetch only; do not unpack the layers into snapshots")
	cmd.Flags().StringVar(&snapshotter, "snapshotter", "", "snapshotter to unpack into (default: the daemon's)")
	return cmd
}

func imagePushCommand(g *globals) *cobra.Command {
	var f remoteFlags
	cmd := &cobra.Command{
		Use:   "push [flags] REF [LOCAL]",
		Short: "upload an image to a registry",
		Long: `push uploads the local image LOCAL (REF when left out) to REF: the blobs the
registry lacks, then the manifests, then REF's tag. With one --platform and
an index, only that platform's manifest is pushed.`,
		Example: `  berthctl images push --plain-http 127.0.0.1:5000/app:copy docker.io/library/busybox:latest`,
		Args:    cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := f.opts(cmd.InOrStdin(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if len(f.platforms) > 1 {
				return usageError{errors.New("push takes at most one --platform")}
			}
			return g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
				local := args[0]
				if len(args) == 2 {
					local = args[1]
				}
				img, err := lookupImage(ctx, c, local)
				if err != nil {
					return err
				}
				d := newProgressDisplay(cmd.OutOrStdout())
				err = c.Push(ctx, args[0], img.Target(), append(opts, client.WithPushProgress(d.update))...)
				d.finish()
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), args[0], img.Target().Digest)
				return nil
			})(cmd, args)
		},
	}
	f.register(cmd, false)
	return cmd
}

// lookupImage returns the image name, or failing that the one its
// normalised reference names ("busybox" finds
// docker.io/library/busybox:latest).
func lookupImage(ctx context.Context, c *client.Client, name string) (*client.Image, error) {
	img, err := c.GetImage(ctx, name)
	if !errdefs.IsNotFound(err) {
		return img, err
	}
	if ref, perr := normalizeRef(name); perr == nil && ref != name {
		if img, err2 := c.GetImage(ctx, ref); err2 == nil {
			return img, nil
		}
	}
	return nil, err
}

func imageRemoveCommand(g *globals) *cobra.Command {
	var sync bool
	cmd := &cobra.Command{
		Use:     "rm [--sync] REF...",
		Aliases: []string{"remove", "delete"},
		Short:   "remove images (garbage collection removes their content)",
		Example: `  berthctl images rm --sync busybox`,
		Args:    cobra.MinimumNArgs(1),
		RunE: g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
			var failed error
			for _, name := range args {
				img, err := lookupImage(ctx, c, name)
				if err == nil {
					err = c.DeleteImage(ctx, img.Name())
				}
				if err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), "berthctl:", err)
					failed = errors.New("some images were not removed")
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), img.Name())
			}
			if sync {
				// One collection after all the deletes.
				if _, err := c.GarbageCollect(ctx); err != nil {
					return fmt.Errorf("garbage collection: %w", err)
				}
			}
			return failed
		}),
	}
	cmd.Flags().BoolVar(&sync, "sync", false, "return once garbage collection has removed the content")
	return cmd
}

func imageTagCommand(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "tag [--force] SRC DST",
		Short:   "name an image's target anew (DST normalised as pull does)",
		Example: `  berthctl images tag busybox example.com/busybox:stable`,
		Args:    cobra.ExactArgs(2),
		RunE: g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
			src, err := lookupImage(ctx, c, args[0])
			if err != nil {
				return err
			}
			// DST is normalised as pull names images: copy:1 is
			// docker.io/library/copy:1.
			ref, err := normalizeRef(args[1])
			if err != nil {
				return usageError{fmt.Errorf("image reference %.200q: %w", args[1], err)}
			}
			dst := images.Image{Name: ref, Target: src.Target()}
			is := c.ImageService()
			_, err = is.Create(ctx, dst)
			if errdefs.IsAlreadyExists(err) && force {
				_, err = is.Update(ctx, dst, "target")
			}
			if err != nil {
				if errdefs.IsAlreadyExists(err) {
					return fmt.Errorf("%w (pass --force to point it at %s)", err, src.Target().Digest)
				}
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), dst.Name)
			return nil
		}),
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "move DST when it exists")
	return cmd
}

func imageLabelCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "label REF KEY=VALUE...",
		Short:   "set image labels (KEY= or KEY removes one)",
		Example: `  berthctl images label busybox team=ci berth.io/gc.ref.content.sbom=sha256:…`,
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			labels, err := parseLabels(args[1:])
			if err != nil {
				return err
			}
			return g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
				img, err := lookupImage(ctx, c, args[0])
				if err != nil {
					return err
				}
				var paths []string
				set := map[string]string{}
				for k, v := range labels {
					paths = append(paths, "labels."+k)
					if v != "" {
						set[k] = v
					}
				}
				updated, err := c.ImageService().Update(ctx, images.Image{Name: img.Name(), Labels: set}, paths...)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), formatLabels(updated.Labels))
				return nil
			})(cmd, args)
		},
	}
}

// archivePlatform returns the archive option of --platform and
// --all-platforms.
func archivePlatform(platform string, all bool) ([]archiveopts.Opt, error) {
	switch {
	case all && platform != "":
		return nil, usageError{errors.New("--platform and --all-platforms together")}
	case all:
		return []archiveopts.Opt{archiveopts.WithAllPlatforms()}, nil
	case platform == "":
		return nil, nil
	}
	p, err := imgplatform.Parse(platform)
	if err != nil {
		return nil, usageError{err}
	}
	return []archiveopts.Opt{archiveopts.WithPlatform(p)}, nil
}

func imageImportCommand(g *globals) *cobra.Command {
	var platform, baseName, indexName, snapshotter string
	var all, noUnpack bool
	cmd := &cobra.Command{
		Use:   "import [flags] FILE|-",
		Short: "import an OCI image layout or docker save archive (tar, or gzip'd tar)",
		Long: `import uploads the archive FILE (- for stdin) to the daemon, which writes its
blobs under a lease and records its images, then unpacks each (its
manifest for --platform, linux/amd64 by default) into --snapshotter (the
daemon's default when not given), so that "berthctl run" can start
containers from it; --no-unpack only records them. It prints their names
and digests. On a terminal, progress goes to stderr: a line per blob redrawn in
place.`,
		Example: `  berthctl images import busybox.tar
  docker save busybox | berthctl images import -
  berthctl images import --base-name example.com/app layout.tar`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := archivePlatform(platform, all)
			if err != nil {
				return err
			}
			if baseName != "" {
				opts = append(opts, archiveopts.WithNamePrefix(baseName))
			}
			if indexName != "" {
				opts = append(opts, archiveopts.WithIndexName(indexName))
			}
			switch {
			case noUnpack && snapshotter != "":
				return usageError{errors.New("--snapshotter and --no-unpack together")}
			case !noUnpack:
				opts = append(opts, archiveopts.WithUnpack(snapshotter))
			}
			in := cmd.InOrStdin()
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			return g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
				// The daemon's lease ends with the call, even when berthctl
				// dies mid-import.
				if d := liveProgress(cmd.ErrOrStderr()); d != nil {
					opts = append(opts, archiveopts.WithProgress(d.update))
					defer d.finish()
				}
				imgs, err := c.Import(ctx, in, opts...)
				if err != nil {
					return err
				}
				for _, img := range imgs {
					fmt.Fprintln(cmd.OutOrStdout(), img.Name(), img.Target().Digest)
				}
				if len(imgs) == 0 {
					fmt.Fprintln(cmd.ErrOrStderr(), "berthctl: the archive named no image (try --base-name or --index-name)")
				}
				return nil
			})(cmd, args)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&platform, "platform", "", "platform os/arch[/variant] (default linux/amd64)")
	fl.BoolVar(&all, "all-platforms", false, "every platform of an index")
	fl.StringVar(&baseName, "base-name", "", "name images whose index.json entry has only a tag REPO:TAG")
	fl.StringVar(&indexName, "index-name", "", "also record the archive's whole index as this image")
	fl.BoolVar(&noUnpack, "no-unpack", false, "record the images only; do not unpack their layers into snapshots")
	fl.StringVar(&snapshotter, "snapshotter", "", "snapshotter to unpack into (default: the daemon's)")
	return cmd
}

func imageExportCommand(g *globals) *cobra.Command {
	var platform string
	var all bool
	cmd := &cobra.Command{
		Use:   "export [flags] FILE|- REF...",
		Short: "export images as an OCI image layout tar",
		Example: `  berthctl images export busybox.tar busybox
  berthctl images export --all-platforms - example.com/app:1 | skopeo …`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := archivePlatform(platform, all)
			if err != nil {
				return err
			}
			return g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) (err error) {
				var imgs []images.Image
				for _, name := range args[1:] {
					img, err := lookupImage(ctx, c, name)
					if err != nil {
						return err
					}
					imgs = append(imgs, img.Metadata())
				}
				out := cmd.OutOrStdout()
				if args[0] != "-" {
					// Written beside the destination and renamed once complete,
					// so that a failed export leaves no partial archive.
					// The deferred func reads the named err: not shadowed here.
					f, terr := os.CreateTemp(dirOf(args[0]), ".berthctl-export-*")
					if terr != nil {
						return terr
					}
					defer func() {
						if cerr := f.Close(); err == nil {
							err = cerr
						}
						if err == nil {
							err = os.Rename(f.Name(), args[0])
						}
						if err != nil {
							os.Remove(f.Name())
						}
					}()
					out = f
				}
				if d := liveProgress(cmd.ErrOrStderr()); d != nil {
					opts = append(opts, archiveopts.WithProgress(d.update))
					defer d.finish()
				}
				bw := bufio.NewWriterSize(out, 1<<20)
				if err := c.Export(ctx, bw, append(opts, archiveopts.WithImages(imgs...))...); err != nil {
					return err
				}
				return bw.Flush()
			})(cmd, args)
		},
	}
	cmd.Flags().StringVar(&platform, "platform", "", "platform os/arch[/variant] (default linux/amd64)")
	cmd.Flags().BoolVar(&all, "all-platforms", false, "every platform of an index")
	return cmd
}

// readJSON decodes the small blob desc (at most images.MaxManifestSize).
func readJSON(ctx context.Context, cs content.Provider, desc ocispec.Descriptor, v any) error {
	if desc.Size > images.MaxManifestSize {
		return fmt.Errorf("blob %s: %d bytes: %w", desc.Digest, desc.Size, errdefs.ErrInvalidArgument)
	}
	data, err := content.ReadBlob(ctx, cs, desc)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// dirOf is the folder of path, "." for a bare name.
func dirOf(path string) string {
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		return path[:i+1]
	}
	return "."
}

// liveProgress is a live progress display on out when out is a terminal,
// else nil: an import's or export's standard output is its names or its
// archive, and a log need not hold its byte counts.
func liveProgress(out io.Writer) *progressDisplay {
	if d := newProgressDisplay(out); d.live {
		return d
	}
	return nil
}
