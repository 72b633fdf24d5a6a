package archive_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/images"
	"github.com/berthrt/berth/images/archive"
	"github.com/berthrt/berth/internal/testutil"
)

// skopeo runs skopeo with args and returns its standard output.
func skopeo(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("skopeo", append([]string{"--insecure-policy"}, args...)...)
	cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("skopeo %v: %v\n%s", args, err, stderr.Bytes())
	}
	return out
}

func requireSkopeo(t *testing.T) {
	t.Helper()
	_, err := exec.LookPath("skopeo")
	testutil.Require(t, err == nil, "skopeo not found in PATH (make deps)")
}

// exportFile exports img from e into a file and returns its path.
func exportFile(t *testing.T, e *env, img images.Image, opts ...archive.Opt) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "export.tar")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := archive.Export(e.ctx, e.store, f, append(opts, archive.WithImages(img))...); err != nil {
		t.Fatal(err)
	}
	return p
}

// importFile imports the archive at p into a new env.
func importFile(t *testing.T, p string, opts ...archive.Opt) (*env, archive.Result) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	e := newEnv(t)
	res, err := archive.Import(e.ctx, e.store, e.images, f, opts...)
	if err != nil {
		t.Fatalf("import of %s: %v", p, err)
	}
	return e, res
}

// TestSkopeoRoundTrip: berth exports, skopeo reads and copies, skopeo
// writes OCI and docker archives, berth imports them; digests agree all
// the way.
func TestSkopeoRoundTrip(t *testing.T) {
	requireSkopeo(t)
	src := newEnv(t)
	im := buildImage(t, "linux/amd64")
	img := src.put(t, im, "docker.io/library/busybox:rt")
	exported := exportFile(t, src, img)

	var inspect struct {
		Digest       digest.Digest
		Architecture string
		Os           string
		Layers       []digest.Digest
	}
	if err := json.Unmarshal(skopeo(t, "inspect", "oci-archive:"+exported), &inspect); err != nil {
		t.Fatal(err)
	}
	if inspect.Digest != im.root.Digest || inspect.Os != "linux" || inspect.Architecture != "amd64" ||
		len(inspect.Layers) != 1 || inspect.Layers[0] != im.layers["linux/amd64"].Digest {
		t.Errorf("skopeo inspect: %+v", inspect)
	}

	dir := filepath.Join(t.TempDir(), "oci")
	skopeo(t, "copy", "oci-archive:"+exported, "oci:"+dir)
	var idx ocispec.Index
	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &idx); err != nil || len(idx.Manifests) != 1 || idx.Manifests[0].Digest != im.root.Digest {
		t.Fatalf("skopeo's layout: %s, %v", data, err)
	}

	t.Run("oci-archive", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "skopeo-oci.tar")
		skopeo(t, "copy", "oci:"+dir, "oci-archive:"+out+":busybox:skopeo")
		e, res := importFile(t, out)
		if len(res.Images) != 1 || res.Images[0].Name != "docker.io/library/busybox:skopeo" || res.Images[0].Target.Digest != im.root.Digest {
			t.Fatalf("import of skopeo's OCI archive: %+v", res)
		}
		if c, err := images.Check(e.ctx, e.store, res.Images[0].Target, nil); err != nil || c.Availability != images.Complete {
			t.Errorf("check: %v, %v", c, err)
		}
		for d := range im.blobs {
			if !e.has(d) {
				t.Errorf("blob %s not imported", d)
			}
		}
	})

	t.Run("docker-archive", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "skopeo-docker.tar")
		skopeo(t, "copy", "oci:"+dir, "docker-archive:"+out+":example.com/busybox:docker")
		e, res := importFile(t, out)
		if res.Format != archive.FormatDocker || len(res.Images) != 1 || res.Images[0].Name != "example.com/busybox:docker" {
			t.Fatalf("import of skopeo's docker archive: %+v", res)
		}
		target := res.Images[0].Target
		data, err := images.ReadManifest(e.ctx, e.store, target)
		if err != nil {
			t.Fatal(err)
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		raw, _ := requireBusybox(t)
		// skopeo keeps the config and writes the layer uncompressed: its
		// digest is the config's diff_id.
		if m.Config.Digest != im.configs["linux/amd64"].Digest || len(m.Layers) != 1 || m.Layers[0].Digest != digest.FromBytes(raw) {
			t.Errorf("converted manifest %s", data)
		}
		if c, err := images.Check(e.ctx, e.store, target, nil); err != nil || c.Availability != images.Complete {
			t.Errorf("check: %v, %v", c, err)
		}

		// And back out: skopeo reads berth's export of the converted image.
		again := exportFile(t, e, res.Images[0])
		if err := json.Unmarshal(skopeo(t, "inspect", "oci-archive:"+again), &inspect); err != nil {
			t.Fatal(err)
		}
		if inspect.Digest != target.Digest {
			t.Errorf("skopeo inspect of the re-export: digest %s, want %s", inspect.Digest, target.Digest)
		}
	})

	t.Run("multi-platform", func(t *testing.T) {
		multi := buildImage(t, "linux/amd64", "linux/arm64")
		mimg := src.put(t, multi, "example.com/multi:1")
		all := exportFile(t, src, mimg, archive.WithAllPlatforms())
		mdir := filepath.Join(t.TempDir(), "oci")
		skopeo(t, "copy", "--all", "oci-archive:"+all, "oci:"+mdir)
		out := filepath.Join(t.TempDir(), "multi.tar")
		skopeo(t, "copy", "--all", "oci:"+mdir, "oci-archive:"+out+":example.com/multi:2")
		e, res := importFile(t, out, archive.WithAllPlatforms())
		if len(res.Images) != 1 || res.Images[0].Target.Digest != multi.root.Digest {
			t.Fatalf("import: %+v", res)
		}
		if c, err := images.Check(e.ctx, e.store, multi.root, nil); err != nil || c.String() != "complete (7/7)" {
			t.Errorf("check: %v, %v", c, err)
		}
		// One platform's export: skopeo inspects the host's platform in it.
		one := exportFile(t, src, mimg)
		if err := json.Unmarshal(skopeo(t, "inspect", "oci-archive:"+one), &inspect); err != nil {
			t.Fatal(err)
		}
		if inspect.Digest != multi.root.Digest && inspect.Digest != multi.manifests["linux/amd64"].Digest {
			t.Errorf("skopeo inspect of a one-platform export: %+v", inspect)
		}
	})
}
