package distribution_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/berthrt/berth/distribution"
	"github.com/berthrt/berth/internal/testutil"
)

// skopeo runs skopeo with args against plain-HTTP registries.
func skopeo(t testing.TB, args ...string) {
	t.Helper()
	bin, err := exec.LookPath("skopeo")
	testutil.Require(t, err == nil, "skopeo not found in PATH (run make deps)")
	cmd := exec.Command(bin, append([]string{"--insecure-policy"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("skopeo %v: %v\n%s", args, err, out)
	}
}

// TestSkopeoInterop: skopeo copies what berth pushed byte for byte, and
// berth pulls what skopeo pushed.
func TestSkopeoInterop(t *testing.T) {
	reg := startRegistry(t)
	r := resolver(t, distribution.ResolverOptions{})
	im := newIndex(t)
	push(t, r, im, reg.Addr+"/berth/interop:1")

	layout := filepath.Join(t.TempDir(), "layout")
	skopeo(t, "copy", "--all", "--preserve-digests", "--src-tls-verify=false",
		"docker://"+reg.Addr+"/berth/interop:1", "oci:"+layout+":interop")
	for _, d := range im.reachable(t, im.root) {
		got, err := os.ReadFile(filepath.Join(layout, "blobs", d.Digest.Algorithm().String(), d.Digest.Encoded()))
		if err != nil {
			t.Fatalf("skopeo's copy of %s (%s): %v", d.Digest, d.MediaType, err)
		}
		if !bytes.Equal(got, im.blobs[d.Digest]) {
			t.Fatalf("skopeo's copy of %s differs", d.Digest)
		}
	}

	skopeo(t, "copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
		"oci:"+layout+":interop", "docker://"+reg.Addr+"/skopeo/pushed:2")
	store := newStore(t)
	img, err := distribution.Pull(context.Background(), r, store, reg.Addr+"/skopeo/pushed:2", distribution.WithAllPlatforms())
	if err != nil {
		t.Fatal(err)
	}
	if img.Target.Digest != im.root.Digest {
		t.Fatalf("pulled %s, want %s", img.Target.Digest, im.root.Digest)
	}
	requireBlobs(t, store, im, im.reachable(t, im.root)...)
}
