package integration

import (
	"encoding/json"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/content"
)

// TestCtlImagesConvert converts an imported busybox to zstd and back to
// uncompressed layers with berthctl, and runs a container from each: the
// chain ID is unchanged, so the converted images use the snapshots the
// import unpacked.
func TestCtlImagesConvert(t *testing.T) {
	d := newDaemon(t)
	const ns = "convert"
	ctx := d.nsContext(ns)
	c := d.client(t, ns)
	base := importBusybox(t, ctx, c, "overlayfs")
	baseChain, err := base.ChainID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ctl := newCtl(t, d)

	for _, tc := range []struct {
		compression, ref, mediaType string
	}{
		{"zstd", "example.com/busybox:zstd", ocispec.MediaTypeImageLayerZstd},
		{"uncompressed", "example.com/busybox:tar", ocispec.MediaTypeImageLayer},
	} {
		out := ctl.ok("-n", ns, "images", "convert", "--compression", tc.compression, "busybox", tc.ref)
		fields := strings.Fields(out)
		if len(fields) != 2 || fields[0] != tc.ref {
			t.Fatalf("convert printed %q, want REF DIGEST", out)
		}
		img, err := c.GetImage(ctx, tc.ref)
		if err != nil {
			t.Fatal(err)
		}
		if img.Target().Digest.String() != fields[1] || img.Target().Digest == base.Target().Digest {
			t.Fatalf("%s: target %s, printed %s, source %s", tc.ref, img.Target().Digest, fields[1], base.Target().Digest)
		}
		data, err := content.ReadBlob(ctx, c.ContentStore(), img.Target())
		if err != nil {
			t.Fatal(err)
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		for _, l := range m.Layers {
			if l.MediaType != tc.mediaType {
				t.Errorf("%s: layer %s is %s, want %s", tc.ref, l.Digest, l.MediaType, tc.mediaType)
			}
		}
		if chain, err := img.ChainID(ctx); err != nil || chain != baseChain {
			t.Errorf("%s: chain ID %s (%v), want the source's %s", tc.ref, chain, err, baseChain)
		}
		ctl.ok("-n", ns, "images", "check", "name=="+tc.ref)
		if out := ctl.ok("-n", ns, "run", "--rm", tc.ref, "conv-"+tc.compression, "echo", "converted"); out != "converted\n" {
			t.Errorf("run from %s printed %q", tc.ref, out)
		}
	}
	// Converting to what the image is already is no new image.
	out := ctl.ok("-n", ns, "images", "convert", "busybox", "example.com/busybox:same")
	if !strings.Contains(out, base.Target().Digest.String()) {
		t.Errorf("gzip to gzip printed %q, want the source digest %s", out, base.Target().Digest)
	}

	ctl.fails(2, []string{"lz4", "gzip, zstd or uncompressed"}, "-n", ns, "images", "convert", "--compression", "lz4", "busybox", "x:1")
	ctl.fails(2, []string{"--platform and --all-platforms"}, "-n", ns, "images", "convert", "--platform", "linux/amd64", "--all-platforms", "busybox", "x:1")
	ctl.fails(1, []string{"nosuch", "not found"}, "-n", ns, "images", "convert", "nosuch:1", "x:1")
	if _, err := c.GetImage(ctx, "x:1"); err == nil {
		t.Error("a failed convert recorded its destination")
	}
}
