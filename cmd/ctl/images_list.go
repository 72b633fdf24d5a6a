package main

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/images"
	imgplatform "github.com/berthrt/berth/images/platform"
)

// imageView is an image as `images ls --format json` prints it: the
// images API's record, with the bytes of its blobs present (of every
// platform; null when they could not be counted) and its platforms.
type imageView struct {
	Name      string            `json:"name"`
	Target    descriptorView    `json:"target"`
	Labels    map[string]string `json:"labels"`
	CreatedAt *time.Time        `json:"created_at"`
	UpdatedAt *time.Time        `json:"updated_at"`
	Size      *int64            `json:"size"`
	Platforms []string          `json:"platforms"`
}

// descriptorView is an OCI descriptor as the images API names its fields.
type descriptorView struct {
	MediaType   string            `json:"media_type"`
	Digest      digest.Digest     `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations"`
}

func newDescriptorView(d ocispec.Descriptor) descriptorView {
	return descriptorView{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size, Annotations: nonNilLabels(d.Annotations)}
}

func newImageView(i images.Image) imageView {
	return imageView{
		Name: i.Name, Target: newDescriptorView(i.Target), Labels: nonNilLabels(i.Labels),
		CreatedAt: utcTime(i.CreatedAt), UpdatedAt: utcTime(i.UpdatedAt), Platforms: []string{},
	}
}

func imageListCommand(g *globals) *cobra.Command {
	var out outputFlags
	cmd := &cobra.Command{
		Use:     "ls [FILTER...]",
		Aliases: []string{"list"},
		Short:   "list images",
		Long: `ls lists the images of the namespace: REF, TYPE (the target's media type),
DIGEST, SIZE (of the blobs present for every platform) and PLATFORMS.
Filter fields: name, target.digest, target.mediatype, target.size,
labels.<key>, annotations.<key>. --format json prints the images API's
record (name, target, labels, created_at, updated_at) with size, in bytes
(null when it could not be counted), and platforms.`,
		Example: `  berthctl images ls
  berthctl images ls -q 'name~=busybox'
  berthctl images ls --format '{{.name}} {{size .size}} {{join .platforms ","}}'`,
		RunE: g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
			imgs, err := c.ListImages(ctx, args...)
			if err != nil {
				return err
			}
			views := make([]imageView, len(imgs))
			for i, img := range imgs {
				views[i] = newImageView(img.Metadata())
			}
			if !out.quiet {
				addSizesAndPlatforms(ctx, c, args, imgs, views)
			}
			return printList(cmd, &out, views, columns[imageView]{
				headers: []string{"REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS"},
				row: func(v imageView) []any {
					size := "-"
					if v.Size != nil {
						size = humanSize(*v.Size)
					}
					return []any{v.Name, v.Target.MediaType, v.Target.Digest, size, orDash(strings.Join(v.Platforms, ","))}
				},
				id: func(v imageView) string { return v.Name },
			})
		}),
	}
	out.register(cmd)
	return cmd
}

// addSizesAndPlatforms fills in the sizes (one Check of the images that
// filters match, every platform: the daemon walks them) and platforms of
// the views of imgs; what cannot be read stays unknown.
func addSizesAndPlatforms(ctx context.Context, c *client.Client, filters []string, imgs []*client.Image, views []imageView) {
	sizes := map[string]int64{}
	if checks, err := c.Check(ctx, filters, client.WithAllPlatforms()); err == nil {
		for _, r := range checks {
			if r.Err == nil {
				sizes[r.Image.Name] = r.PresentSize
			}
		}
	}
	cs := c.ContentStore()
	for i := range views {
		v := &views[i]
		if n, ok := sizes[v.Name]; ok {
			v.Size = &n
		}
		if list, err := imagePlatforms(ctx, cs, imgs[i].Target()); err == nil && list != nil {
			v.Platforms = list
		}
	}
}

// imagePlatforms lists the platforms of an image: those of an index's
// manifests, or the one a manifest's config names.
func imagePlatforms(ctx context.Context, cs content.Store, target ocispec.Descriptor) ([]string, error) {
	children, err := images.Children(ctx, cs, target)
	if err != nil {
		return nil, err
	}
	var out []string
	if images.IsIndex(target.MediaType) {
		for _, d := range children {
			if d.Platform != nil {
				out = append(out, platforms.Format(*d.Platform))
			}
		}
	} else if len(children) > 0 {
		var p ocispec.Platform
		if err := readJSON(ctx, cs, children[0], &p); err != nil {
			return nil, err
		}
		if p.OS != "" {
			out = append(out, platforms.Format(p))
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// imageCheckView is one image's result of `images check --format json`,
// as the transfer API's Check names its fields: error is set when the
// image could not be walked, and the counts are then zero.
type imageCheckView struct {
	Name         string           `json:"name"`
	Target       descriptorView   `json:"target"`
	Availability string           `json:"availability"` // complete, incomplete, unavailable; "" on error
	Required     int              `json:"required"`
	Present      int              `json:"present"`
	Size         int64            `json:"size"`
	PresentSize  int64            `json:"present_size"`
	Missing      []descriptorView `json:"missing"`
	Error        string           `json:"error"`
}

func newImageCheckView(r client.ImageCheck) imageCheckView {
	v := imageCheckView{
		Name: r.Image.Name, Target: newDescriptorView(r.Image.Target),
		Availability: string(r.Availability), Required: r.Required, Present: r.Present,
		Size: r.Size, PresentSize: r.PresentSize, Missing: make([]descriptorView, len(r.Missing)),
	}
	for i, d := range r.Missing {
		v.Missing[i] = newDescriptorView(d)
	}
	if r.Err != nil {
		v.Error = r.Err.Error()
	}
	return v
}

func imageCheckCommand(g *globals) *cobra.Command {
	var platform string
	var all bool
	var out outputFlags
	cmd := &cobra.Command{
		Use:   "check [FILTER...]",
		Short: "say how much of each image's content is present",
		Long: `check walks each image (the manifests of the platform chosen, linux/amd64 by
default) and prints REF, TYPE, AVAILABILITY — complete, incomplete or
unavailable with present/required blobs — and SIZE present/required.
--format json adds the blobs missing (at most 256 an image).`,
		Example: `  berthctl images check
  berthctl images check --all-platforms 'name~=busybox'
  berthctl images check --format '{{.name}} {{.availability}} {{.present}}/{{.required}}'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			var opts []client.RemoteOpt
			switch {
			case all && platform != "":
				return usageError{errors.New("--platform and --all-platforms together")}
			case all:
				opts = append(opts, client.WithAllPlatforms())
			case platform != "":
				if _, err := imgplatform.Parse(platform); err != nil {
					return usageError{err}
				}
				opts = append(opts, client.WithPlatform(platform))
			}
			return g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
				checks, err := c.Check(ctx, args, opts...)
				if err != nil {
					return err
				}
				views := make([]imageCheckView, len(checks))
				for i, r := range checks {
					views[i] = newImageCheckView(r)
				}
				return printList(cmd, &out, views, columns[imageCheckView]{
					headers: []string{"REF", "TYPE", "AVAILABILITY", "SIZE"},
					row: func(v imageCheckView) []any {
						if v.Error != "" {
							return []any{v.Name, v.Target.MediaType, "error: " + v.Error, "-"}
						}
						return []any{v.Name, v.Target.MediaType, checkText(v), humanSize(v.PresentSize) + "/" + humanSize(v.Size)}
					},
					id: func(v imageCheckView) string { return v.Name },
				})
			})(cmd, args)
		},
	}
	cmd.Flags().StringVar(&platform, "platform", "", "platform os/arch[/variant] (default linux/amd64)")
	cmd.Flags().BoolVar(&all, "all-platforms", false, "every platform of an index")
	out.register(cmd)
	return cmd
}

// checkText is the availability for people: "complete (3/3)".
func checkText(v imageCheckView) string {
	return images.CheckResult{Availability: images.Availability(v.Availability), Present: v.Present, Required: v.Required}.String()
}
