package metadata

import (
	"maps"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/images"
)

func testImage(name string) images.Image {
	return images.Image{
		Name: name,
		Target: ocispec.Descriptor{
			MediaType:   ocispec.MediaTypeImageIndex,
			Digest:      digest.FromString(name),
			Size:        321,
			Annotations: map[string]string{"org.opencontainers.image.ref.name": "latest"},
			Platform:    &ocispec.Platform{OS: "linux", Architecture: "amd64"},
		},
		Labels: map[string]string{"role": "base"},
	}
}

func TestImageCRUD(t *testing.T) {
	db, _ := newTestDB(t)
	ctx := nsCtx("ci")
	s := db.Images()
	name := "registry.example:5000/library/busybox:1.36@sha256:" + strings.Repeat("a", 64)
	created, err := s.Create(ctx, testImage(name))
	requireNoErr(t, err)
	if created.CreatedAt.IsZero() || !created.CreatedAt.Equal(created.UpdatedAt) {
		t.Errorf("times: %v %v", created.CreatedAt, created.UpdatedAt)
	}
	got, err := s.Get(ctx, name)
	requireNoErr(t, err)
	if got.Target.Digest != created.Target.Digest || got.Target.Platform.Architecture != "amd64" ||
		got.Target.Annotations["org.opencontainers.image.ref.name"] != "latest" || got.Labels["role"] != "base" {
		t.Errorf("Get = %+v", got)
	}
	refusedUnchanged(t, db, errdefs.ErrAlreadyExists, func() error { _, err := s.Create(ctx, testImage(name)); return err })

	// Field paths.
	in := got
	in.Labels = map[string]string{"new": "x"}
	in.Target.Digest = digest.FromString("other")
	up, err := s.Update(ctx, in, "labels.new")
	requireNoErr(t, err)
	if !maps.Equal(up.Labels, map[string]string{"role": "base", "new": "x"}) || up.Target.Digest != got.Target.Digest {
		t.Errorf("Update labels.new = %+v", up)
	}
	up, err = s.Update(ctx, in)
	requireNoErr(t, err)
	if !maps.Equal(up.Labels, in.Labels) || up.Target.Digest != in.Target.Digest || !up.CreatedAt.Equal(created.CreatedAt) {
		t.Errorf("Update all = %+v", up)
	}
	for _, p := range []string{"name", "bogus", "labels."} {
		refusedUnchanged(t, db, errdefs.ErrInvalidArgument, func() error { _, err := s.Update(ctx, in, p); return err })
	}
	refusedUnchanged(t, db, errdefs.ErrNotFound, func() error { _, err := s.Update(ctx, testImage("absent"), "labels"); return err })

	// Isolation.
	if _, err := s.Get(nsCtx("other"), name); !errdefs.IsNotFound(err) {
		t.Errorf("Get from another namespace: %v", err)
	}
	if list, _ := s.List(nsCtx("other")); len(list) != 0 {
		t.Errorf("List in another namespace: %v", list)
	}

	requireNoErr(t, s.Delete(ctx, name))
	if _, err := s.Get(ctx, name); !errdefs.IsNotFound(err) {
		t.Errorf("Get after Delete: %v", err)
	}
	refusedUnchanged(t, db, errdefs.ErrNotFound, func() error { return s.Delete(ctx, name) })
}

func TestImageBadInput(t *testing.T) {
	db, _ := newTestDB(t)
	ctx := nsCtx("ci")
	s := db.Images()
	requireNoErr(t, db.Namespaces().Create(ctx, "ci", nil))
	bad := map[string]func(*images.Image){
		"empty name":    func(i *images.Image) { i.Name = "" },
		"long name":     func(i *images.Image) { i.Name = strings.Repeat("a", images.MaxImageNameSize+1) },
		"space":         func(i *images.Image) { i.Name = "a b" },
		"nul":           func(i *images.Image) { i.Name = "a\x00b" },
		"newline":       func(i *images.Image) { i.Name = "a\nb" },
		"non-ascii":     func(i *images.Image) { i.Name = "bü" },
		"no media type": func(i *images.Image) { i.Target.MediaType = "" },
		"no digest":     func(i *images.Image) { i.Target.Digest = "" },
		"bad digest":    func(i *images.Image) { i.Target.Digest = "sha256:xyz" },
		"zero size":     func(i *images.Image) { i.Target.Size = 0 },
		"bad label":     func(i *images.Image) { i.Labels = map[string]string{"": "x"} },
		"big annotation": func(i *images.Image) {
			i.Target.Annotations = map[string]string{"k": strings.Repeat("v", MaxLabelSize)}
		},
	}
	for name, mutate := range bad {
		t.Run(name, func(t *testing.T) {
			img := testImage("ok")
			mutate(&img)
			refusedUnchanged(t, db, errdefs.ErrInvalidArgument, func() error { _, err := s.Create(ctx, img); return err })
		})
	}
	for _, n := range []string{"", "a b", strings.Repeat("x", images.MaxImageNameSize+1)} {
		refusedUnchanged(t, db, errdefs.ErrInvalidArgument, func() error { _, err := s.Get(ctx, n); return err })
		refusedUnchanged(t, db, errdefs.ErrInvalidArgument, func() error { return s.Delete(ctx, n) })
	}
	// A name of exactly the bound is fine, and so is one with every
	// special character a reference has.
	_, err := s.Create(ctx, testImage(strings.Repeat("a", images.MaxImageNameSize)))
	requireNoErr(t, err)
	_, err = s.Create(ctx, testImage("../../etc/passwd:x@y"))
	requireNoErr(t, err)
}

func TestImageListFilters(t *testing.T) {
	db, _ := newTestDB(t)
	ctx := nsCtx("ci")
	s := db.Images()
	a := testImage("docker.io/library/a:1")
	b := testImage("docker.io/library/b:1")
	b.Target.MediaType = ocispec.MediaTypeImageManifest
	b.Labels = map[string]string{"role": "app"}
	for _, img := range []images.Image{b, a} {
		_, err := s.Create(ctx, img)
		requireNoErr(t, err)
	}
	for _, tc := range []struct {
		filters []string
		want    []string
	}{
		{nil, []string{a.Name, b.Name}},
		{[]string{`name=="` + a.Name + `"`}, []string{a.Name}},
		{[]string{"target.digest==" + b.Target.Digest.String()}, []string{b.Name}},
		{[]string{`target.mediatype=="` + ocispec.MediaTypeImageManifest + `"`}, []string{b.Name}},
		{[]string{"labels.role==base"}, []string{a.Name}},
		{[]string{"labels.role==base", "labels.role==app"}, []string{a.Name, b.Name}},
		{[]string{"name~=b:1$"}, []string{b.Name}},
	} {
		list, err := s.List(ctx, tc.filters...)
		requireNoErr(t, err)
		var got []string
		for _, img := range list {
			got = append(got, img.Name)
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("List(%q) = %v, want %v", tc.filters, got, tc.want)
		}
	}
	if _, err := s.List(ctx, "name=="); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad filter: %v", err)
	}
}

func TestImagesCountInNamespaceDelete(t *testing.T) {
	db, _ := newTestDB(t)
	ctx := nsCtx("ci")
	_, err := db.Images().Create(ctx, testImage("x"))
	requireNoErr(t, err)
	err = refusedUnchanged(t, db, errdefs.ErrFailedPrecondition, func() error { return db.Namespaces().Delete(ctx, "ci") })
	errorContains(t, err, "1 image")
}
