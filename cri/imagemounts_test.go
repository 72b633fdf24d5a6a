package cri

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/errdefs"
)

// TestResolveImageSubPath resolves sub paths in an image tree with hostile
// symlinks: whatever a link says, the result stays inside the image, and
// what escapes, is missing or is no folder is InvalidArgument naming it.
func TestResolveImageSubPath(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"etc", "usr/share", "deep/er"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"etc/passwd", "bin/sh"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A folder outside the image that a link could reach on the host.
	outside := t.TempDir()
	links := map[string]string{
		"abs":          "/etc",                  // absolute: the image's /etc
		"up":           "../../../../../../etc", // climbs out: stops at the image's root
		"deep/er/up":   "../../../usr/share",
		"chain":        "abs",
		"file":         "bin/sh",
		"loop":         "loop",
		"outside":      outside, // a host folder the image does not have
		"outside-up":   "../../../../../../../.." + outside,
		"hostroot":     "/",
		"etc/self":     ".",
		"dangling":     "nowhere/at/all",
		"usr/share/rt": "../../",
	}
	for l, target := range links {
		if err := os.Symlink(target, filepath.Join(root, l)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		sub  string
		want string // relative to root; "-" for an error
	}{
		{"", "."},
		{"etc", "etc"},
		{"etc/", "etc"},
		{"./etc", "etc"},
		{"etc/self/self", "etc"},
		{"abs", "etc"},
		{"up", "etc"},
		{"deep/er/up", "usr/share"},
		{"chain", "etc"},
		{"hostroot", "."},
		{"usr/share/rt", "."},
		{"file", "-"},
		{"etc/passwd", "-"},
		{"etc/passwd/x", "-"},
		{"loop", "-"},
		{"outside", "-"},
		{"outside-up", "-"},
		{"dangling", "-"},
		{"missing", "-"},
		{"../etc", "-"},
		{"etc/../etc", "-"},
		{"..", "-"},
		{"/etc", "-"},
		{"etc\x00", "-"},
		{strings.Repeat("a/", imageSubPathMax), "-"},
	} {
		got, err := resolveImageSubPath(root, tc.sub)
		if tc.want == "-" {
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("%.40q: got %q, %v; want InvalidArgument", tc.sub, got, err)
			} else if !strings.Contains(err.Error(), "image sub path") {
				t.Errorf("%.40q: the error does not name the sub path: %v", tc.sub, err)
			}
			continue
		}
		if err != nil || got != filepath.Join(root, tc.want) {
			t.Errorf("%q: got %q, %v; want %q", tc.sub, got, err, filepath.Join(root, tc.want))
		}
	}
}

// TestImageMountStatus reports each image mount with its image's id as
// image_ref, leaves other mounts alone and does not change the config.
func TestImageMountStatus(t *testing.T) {
	mounts := []*runtimeapi.Mount{
		{ContainerPath: "/host", HostPath: "/tmp"},
		{ContainerPath: "/a", Readonly: true, Image: &runtimeapi.ImageSpec{Image: "img-a"}},
		{ContainerPath: "/b", Readonly: true, Image: &runtimeapi.ImageSpec{Image: "img-b"}, ImageSubPath: "etc"},
	}
	recs := []imageMountRecord{{ContainerPath: "/a", ImageID: "sha256:aa"}, {ContainerPath: "/b", ImageID: "sha256:bb"}}
	got := imageMountStatus(mounts, recs)
	if len(got) != 3 || got[0] != mounts[0] || got[1].GetImage().GetImageRef() != "sha256:aa" || got[2].GetImage().GetImageRef() != "sha256:bb" ||
		got[1].GetImage().GetImage() != "img-a" || got[2].GetImageSubPath() != "etc" {
		t.Errorf("status mounts: %v", got)
	}
	if mounts[1].Image.ImageRef != "" {
		t.Error("the config's mount was changed")
	}
}
