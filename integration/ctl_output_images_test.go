package integration

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/images"
	"github.com/berthrt/berth/snapshots"
)

// printedDescriptor is a descriptor as berthctl's --format json prints it.
type printedDescriptor struct {
	MediaType   string            `json:"media_type"`
	Digest      digest.Digest     `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations"`
}

// equals says whether p prints d: media type, digest, size, annotations.
func (p printedDescriptor) equals(d ocispec.Descriptor) bool {
	return p.MediaType == d.MediaType && p.Digest == d.Digest && p.Size == d.Size && maps.Equal(p.Annotations, d.Annotations)
}

// printedSnapshot is a snapshot as berthctl's --format json prints it.
type printedSnapshot struct {
	Name      string            `json:"name"`
	Parent    string            `json:"parent"`
	Kind      string            `json:"kind"`
	Labels    map[string]string `json:"labels"`
	CreatedAt time.Time         `json:"created_at"`
	UpdatedAt time.Time         `json:"updated_at"`
}

// equals says whether p prints info, times in UTC.
func (p printedSnapshot) equals(info snapshots.Info) bool {
	return p.Name == info.Name && p.Parent == info.Parent && p.Kind == info.Kind.String() &&
		maps.Equal(p.Labels, info.Labels) && p.CreatedAt.Equal(info.Created) && p.UpdatedAt.Equal(info.Updated) &&
		p.CreatedAt.Location() == time.UTC && p.UpdatedAt.Location() == time.UTC
}

// TestCtlOutputImages types images ls/check and the snapshots commands
// with --format json, a template and -q, and checks what they print
// against what the client library gets from the same daemon; tables have
// their headers and human sizes and times; a missing image's error says
// how to pull it.
func TestCtlOutputImages(t *testing.T) {
	d := newDaemon(t)
	const ns = "out-images"
	ctx := d.nsContext(ns)
	api := d.client(t, ns)
	img := importBusybox(t, ctx, api, "overlayfs")
	chainID, err := img.ChainID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := newCtl(t, d)
	c.ok("-n", ns, "images", "tag", commitBase, "example.com/busybox:out")
	c.ok("-n", ns, "images", "label", "example.com/busybox:out", "team=out")
	// An image whose content is not there: unavailable, no platforms.
	gone := images.Image{Name: "example.com/gone:1", Target: ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("gone"), Size: 4,
	}}
	if _, err := api.ImageService().Create(ctx, gone); err != nil {
		t.Fatal(err)
	}
	bb := img.Name()
	names := []string{bb, "example.com/busybox:out", gone.Name}
	slices.Sort(names)

	t.Run("images ls", func(t *testing.T) {
		var got []struct {
			Name      string            `json:"name"`
			Target    printedDescriptor `json:"target"`
			Labels    map[string]string `json:"labels"`
			CreatedAt time.Time         `json:"created_at"`
			UpdatedAt time.Time         `json:"updated_at"`
			Size      *int64            `json:"size"`
			Platforms []string          `json:"platforms"`
		}
		c.jsonOf(&got, "-n", ns, "images", "ls", "--format", "json")
		want, err := api.ListImages(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checks, err := api.Check(ctx, nil, client.WithAllPlatforms())
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) || len(want) != len(names) || len(checks) != len(want) {
			t.Fatalf("images ls --format json: %d images, the API %d (check %d), want %q", len(got), len(want), len(checks), names)
		}
		for i, w := range want {
			m := w.Metadata()
			g := got[i]
			if g.Name != m.Name || !g.Target.equals(m.Target) || !maps.Equal(g.Labels, m.Labels) ||
				!g.CreatedAt.Equal(m.CreatedAt) || !g.UpdatedAt.Equal(m.UpdatedAt) || g.CreatedAt.Location() != time.UTC {
				t.Errorf("image %d: printed %+v, the API %+v", i, g, m)
			}
			if g.Size == nil || *g.Size != checks[i].PresentSize {
				t.Errorf("%s: size %v, the API's check %d", g.Name, g.Size, checks[i].PresentSize)
			}
			wantPlatforms := []string{"linux/amd64"}
			if m.Name == gone.Name {
				wantPlatforms = []string{} // [] rather than null
			}
			if g.Platforms == nil || !slices.Equal(g.Platforms, wantPlatforms) {
				t.Errorf("%s: platforms %#v, want %q", g.Name, g.Platforms, wantPlatforms)
			}
		}
		if got[0].Labels == nil || got[1].Labels["team"] != "out" {
			t.Errorf("labels %v and %v, want {} and team=out", got[0].Labels, got[1].Labels)
		}

		size := checks[slices.Index(names, bb)].PresentSize
		c.prints(bb+" "+strconv.FormatInt(size, 10)+" linux/amd64\n",
			"-n", ns, "images", "ls", "--format", `{{.name}} {{.size}} {{join .platforms ","}}`, "name=="+bb)
		c.prints(strings.Join(names, "\n")+"\n", "-n", ns, "images", "ls", "-q")
		table := c.ok("-n", ns, "images", "ls", "name=="+bb)
		if h := headers(table); !slices.Equal(h, []string{"REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS"}) {
			t.Errorf("images ls headers %q", h)
		}
		if !strings.Contains(table, "MiB") || strings.Contains(table, strconv.FormatInt(size, 10)) {
			t.Errorf("images ls: want the size %d in MiB:\n%s", size, table)
		}
	})

	t.Run("images check", func(t *testing.T) {
		var got []struct {
			Name         string              `json:"name"`
			Target       printedDescriptor   `json:"target"`
			Availability string              `json:"availability"`
			Required     int                 `json:"required"`
			Present      int                 `json:"present"`
			Size         int64               `json:"size"`
			PresentSize  int64               `json:"present_size"`
			Missing      []printedDescriptor `json:"missing"`
			Error        string              `json:"error"`
		}
		c.jsonOf(&got, "-n", ns, "images", "check", "--format", "json")
		want, err := api.Check(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) || len(want) != len(names) {
			t.Fatalf("images check --format json: %d images, the API %d", len(got), len(want))
		}
		for i, w := range want {
			g := got[i]
			if g.Name != w.Image.Name || !g.Target.equals(w.Image.Target) || g.Availability != string(w.Availability) ||
				g.Required != w.Required || g.Present != w.Present || g.Size != w.Size || g.PresentSize != w.PresentSize ||
				len(g.Missing) != len(w.Missing) || w.Err != nil || g.Error != "" {
				t.Errorf("check %d: printed %+v, the API %+v", i, g, w)
				continue
			}
			for j, m := range w.Missing {
				if !g.Missing[j].equals(m) {
					t.Errorf("%s: missing %d printed %+v, the API %+v", g.Name, j, g.Missing[j], m)
				}
			}
		}
		if i := slices.Index(names, gone.Name); got[i].Availability != "unavailable" || len(got[i].Missing) != 1 || got[i].Missing[0].Digest != gone.Target.Digest {
			t.Errorf("%s: %+v, want unavailable, its root missing", gone.Name, got[i])
		}
		if i := slices.Index(names, bb); got[i].Availability != "complete" || got[i].Missing == nil {
			t.Errorf("%s: %+v, want complete, missing []", bb, got[i])
		}

		c.prints(bb+" complete 3/3\n", "-n", ns, "images", "check", "--format", "{{.name}} {{.availability}} {{.present}}/{{.required}}", "name=="+bb)
		c.prints(gone.Name+"\n", "-n", ns, "images", "check", "-q", "name=="+gone.Name)
		table := c.ok("-n", ns, "images", "check")
		if h := headers(table); !slices.Equal(h, []string{"REF", "TYPE", "AVAILABILITY", "SIZE"}) {
			t.Errorf("images check headers %q", h)
		}
		if !strings.Contains(table, "complete (3/3)") || !strings.Contains(table, "unavailable (0/1)") {
			t.Errorf("images check:\n%s", table)
		}
		c.fails(2, []string{"--platform and --all-platforms"}, "-n", ns, "images", "check", "--platform", "linux/amd64", "--all-platforms")
	})

	t.Run("images export failed", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "gone.tar")
		c.fails(1, []string{"not found"}, "-n", ns, "images", "export", file, gone.Name)
		if entries, err := os.ReadDir(filepath.Dir(file)); err != nil || len(entries) != 0 {
			t.Errorf("a failed export left %v (%v)", entries, err)
		}
	})

	t.Run("snapshots", func(t *testing.T) {
		sn := api.SnapshotService("overlayfs")
		args := func(a ...string) []string {
			return append([]string{"-n", ns, "snapshots", "--snapshotter", "overlayfs"}, a...)
		}
		c.ok(args("prepare", "--label", "team=out", "out-active", chainID)...)
		c.ok(args("view", "out-view", chainID)...)
		t.Cleanup(func() {
			cctx := context.WithoutCancel(ctx)
			sn.Remove(cctx, "out-view")
			sn.Remove(cctx, "out-active")
		})
		var infos []snapshots.Info
		if err := sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
			infos = append(infos, info)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		byName := map[string]snapshots.Info{}
		for _, info := range infos {
			byName[info.Name] = info
		}

		for _, cmd := range []string{"ls", "tree"} {
			var got []printedSnapshot
			c.jsonOf(&got, args(cmd, "--format", "json")...)
			if len(got) != len(infos) {
				t.Fatalf("snapshots %s --format json: %d snapshots, the API %d", cmd, len(got), len(infos))
			}
			for _, g := range got {
				if info, ok := byName[g.Name]; !ok || !g.equals(info) {
					t.Errorf("snapshots %s --format json: printed %+v, the API %+v", cmd, g, info)
				}
			}
		}
		var one printedSnapshot
		c.jsonOf(&one, args("info", "--format", "json", "out-active")...)
		if !one.equals(byName["out-active"]) || one.Labels["team"] != "out" || one.Parent != chainID {
			t.Errorf("snapshots info --format json: printed %+v, the API %+v", one, byName["out-active"])
		}
		c.prints(chainID+" active\n", args("info", "--format", "{{.parent}} {{.kind}}", "out-active")...)
		c.prints("out-active\n", args("ls", "-q", "kind==active")...)
		c.prints("out-view view "+chainID+"\n", args("ls", "--format", "{{.name}} {{.kind}} {{.parent}}", "name==out-view")...)

		table := c.ok(args("ls", "name==out-active")...)
		if h := headers(table); !slices.Equal(h, []string{"KEY", "PARENT", "KIND", "CREATED", "LABELS"}) {
			t.Errorf("snapshots ls headers %q", h)
		}
		if !strings.Contains(table, " ago ") || !strings.Contains(table, "team=out") {
			t.Errorf("snapshots ls: want a human time and the labels:\n%s", table)
		}
		info := c.ok(args("info", "out-active")...)
		for _, want := range []string{"Key:", "Parent:", chainID, "Kind:", "active", "Created:", " ago", "team=out"} {
			if !strings.Contains(info, want) {
				t.Errorf("snapshots info: no %q:\n%s", want, info)
			}
		}
		tree := c.ok(args("tree")...)
		if !strings.Contains(tree, "\\_ out-active (active)\n") || !strings.Contains(tree, "\\_ out-view (view)\n") {
			t.Errorf("snapshots tree:\n%s", tree)
		}

		type printedUsage struct {
			Key    string `json:"key"`
			Size   int64  `json:"size"`
			Inodes int64  `json:"inodes"`
		}
		var usage []printedUsage
		c.jsonOf(&usage, args("usage", "--format", "json")...)
		if len(usage) != len(infos) {
			t.Fatalf("snapshots usage --format json: %d snapshots, the API %d", len(usage), len(infos))
		}
		var total snapshots.Usage
		for i, info := range infos {
			u, err := sn.Usage(ctx, info.Name)
			if err != nil {
				t.Fatal(err)
			}
			total.Add(u)
			if usage[i] != (printedUsage{info.Name, u.Size, u.Inodes}) {
				t.Errorf("usage %d: printed %+v, the API %s %+v", i, usage[i], info.Name, u)
			}
		}
		byKey := c.ok(args("usage", "--bytes")...)
		if h := headers(byKey); !slices.Equal(h, []string{"KEY", "SIZE", "INODES"}) {
			t.Errorf("snapshots usage headers %q", h)
		}
		if want := "TOTAL " + strconv.FormatInt(total.Size, 10) + " " + strconv.FormatInt(total.Inodes, 10); !strings.Contains(strings.Join(strings.Fields(byKey), " "), want) {
			t.Errorf("snapshots usage --bytes: no %q:\n%s", want, byKey)
		}
		c.prints(chainID+" "+strconv.FormatInt(usage[slices.IndexFunc(usage, func(u printedUsage) bool { return u.Key == chainID })].Size, 10)+"\n",
			args("usage", "--format", "{{.key}} {{.size}}", chainID)...)

		type printedMount struct {
			Type    string   `json:"type"`
			Source  string   `json:"source"`
			Target  string   `json:"target"`
			Options []string `json:"options"`
		}
		var mounts []printedMount
		c.jsonOf(&mounts, args("mounts", "--format", "json", "/mnt/out", "out-active")...)
		want, err := sn.Mounts(ctx, "out-active")
		if err != nil {
			t.Fatal(err)
		}
		if len(mounts) != len(want) || len(want) == 0 {
			t.Fatalf("snapshots mounts --format json: %+v, the API %+v", mounts, want)
		}
		for i, m := range want {
			g := mounts[i]
			if g.Type != m.Type || g.Source != m.Source || g.Target != m.Target || !slices.Equal(g.Options, m.Options) {
				t.Errorf("mount %d: printed %+v, the API %+v", i, g, m)
			}
		}
		if out := c.ok(args("mounts", "/mnt/out", "out-active")...); !strings.HasPrefix(out, "mount -t "+want[0].Type+" ") || !strings.Contains(out, " /mnt/out -o ") {
			t.Errorf("snapshots mounts: %q", out)
		}
		c.fails(1, []string{`snapshot "nope"`, "not found"}, args("info", "nope")...)
		c.fails(1, []string{`snapshot "nope"`, "not found"}, args("usage", chainID, "nope")...)
		c.fails(2, []string{"--format"}, args("ls", "--format", "xml")...)
	})

	t.Run("image not found", func(t *testing.T) {
		d.nsContext("default")
		const missing = "example.com/none:1"
		c.fails(1, []string{"image " + missing + " not found in namespace " + ns + ": pull it with `berthctl -n " + ns + " images pull " + missing + "` (or pass --pull)"},
			"-n", ns, "run", "--rm", missing, "out-none", "true")
		c.fails(1, []string{"image " + missing + " not found in namespace default: pull it with `berthctl images pull " + missing + "` (or pass --pull)"},
			"run", "--rm", missing, "out-none", "true")
	})
}
