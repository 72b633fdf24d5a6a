package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/gc"
	"github.com/berthrt/berth/images"
	"github.com/berthrt/berth/images/archive"
	"github.com/berthrt/berth/internal/testimage"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/snapshots"
)

// python returns a python3 that can import google.protobuf (Debian's
// python3-protobuf): $BERTH_PYTHON, else python3 in PATH, else
// /usr/bin/python3, which a python3 from pyenv may shadow in PATH.
func python(t *testing.T) string {
	t.Helper()
	candidates := []string{os.Getenv("BERTH_PYTHON")}
	if p, err := exec.LookPath("python3"); err == nil {
		candidates = append(candidates, p)
	}
	candidates = append(candidates, "/usr/bin/python3")
	var tried []string
	for _, p := range candidates {
		if p == "" {
			continue
		}
		out, err := exec.Command(p, "-c", "import google.protobuf").CombinedOutput()
		if err == nil {
			return p
		}
		tried = append(tried, fmt.Sprintf("%s: %v: %s", p, err, bytes.TrimSpace(out)))
	}
	testutil.Require(t, false, "no python3 with google.protobuf (apt-get install python3-protobuf, or make deps): "+strings.Join(tried, "; "))
	return ""
}

// Images the Python client's tests run: busybox imported (and unpacked)
// from an OCI archive, and an index whose linux/amd64 manifest is
// busybox's.
const (
	pythonImage      = "docker.io/library/busybox:latest"
	pythonIndexImage = "example.com/python/busybox-index:1"
)

// TestPythonClient runs the Python client's tests (clients/python/tests)
// against a real berthd: version, namespaces, containers, a task run from a
// root folder to its exit code, containers run from an image (and from an
// index, by platform) with their output through FIFOs, the /tasks/exit
// event, error classes, and the framing checked byte by byte. The chain ID
// the Go client computes is handed over, for the Python one to agree.
func TestPythonClient(t *testing.T) {
	py := python(t)
	d := newDaemon(t)
	ns := "python"
	ctx := d.nsContext(ns) // its cgroups are removed at cleanup
	c := d.client(t, ns)
	chainID := pythonImages(t, ctx, c)
	fifoDir := filepath.Join(d.state, ".fifo")
	cmd := exec.Command(py, "-m", "unittest", "discover", "-v", "-s", "tests")
	cmd.Dir = filepath.Join(testutil.RepoRoot(), "clients", "python")
	cmd.Env = append(os.Environ(),
		"BERTH_ADDRESS="+d.address,
		"BERTH_ROOTFS="+busyboxLower(t),
		"BERTH_NAMESPACE="+ns,
		"BERTH_IMAGE="+pythonImage,
		"BERTH_INDEX_IMAGE="+pythonIndexImage,
		"BERTH_IMAGE_CHAIN_ID="+chainID,
		"BERTH_FIFO_DIR="+fifoDir,
		"PYTHONDONTWRITEBYTECODE=1",
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python client tests: %v\n%s", err, out)
	}
	if bytes.Contains(out, []byte("skipped")) {
		t.Fatalf("python client tests skipped a test:\n%s", out)
	}
	t.Logf("%s", out)

	// What the Python client made, it removed: containers, their
	// snapshots (only the image's committed layer is left) and FIFOs.
	if ctrs, err := c.Containers(ctx); err != nil || len(ctrs) != 0 {
		t.Errorf("containers left: %d, %v", len(ctrs), err)
	}
	var left []string
	if err := c.SnapshotService("").Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if info.Name != chainID {
			left = append(left, info.Name)
		}
		return nil
	}); err != nil || len(left) != 0 {
		t.Errorf("snapshots left: %v, %v", left, err)
	}
	if fifos, err := os.ReadDir(fifoDir); err != nil || len(fifos) != 0 {
		t.Errorf("FIFO folders left in %s: %v, %v", fifoDir, fifos, err)
	}
}

// pythonImages imports busybox as pythonImage (unpacked into the default
// snapshotter) and records pythonIndexImage, an index of a linux/arm64
// manifest the daemon does not have, then busybox's as linux/amd64: a
// client that picks by platform never reads the first. It returns the
// chain ID of busybox's layers.
func pythonImages(t *testing.T, ctx context.Context, c *client.Client) string {
	t.Helper()
	img, err := testimage.Busybox("")
	if err != nil {
		t.Fatal(err)
	}
	var arch bytes.Buffer
	if err := img.WriteOCIArchive(&arch, pythonImage); err != nil {
		t.Fatal(err)
	}
	imported, err := c.Import(ctx, &arch, archive.WithUnpack(""))
	if err != nil {
		t.Fatal(err)
	}
	chainID, err := imported[0].ChainID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	amd64 := img.Manifest
	amd64.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	absent := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("no such manifest"), Size: 16,
		Platform: &ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}
	data, err := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{absent, amd64}})
	if err != nil {
		t.Fatal(err)
	}
	index := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromBytes(data), Size: int64(len(data))}
	ctx, done, err := c.WithLease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer done(ctx)
	if err := content.WriteBlob(ctx, c.ContentStore(), "python-index", bytes.NewReader(data), index,
		content.WithLabels(map[string]string{gc.LabelRefContent + ".m.1": amd64.Digest.String()})); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ImageService().Create(ctx, images.Image{Name: pythonIndexImage, Target: index}); err != nil {
		t.Fatal(err)
	}
	return chainID
}

// TestPythonGeneratedCode fails when the Python classes committed under
// clients/python/berth/gen differ from what protoc makes of proto/ now, so
// that `go test ./...` alone catches a .proto change that left the Python
// client behind (make check-protos catches it too).
func TestPythonGeneratedCode(t *testing.T) {
	protoc, err := exec.LookPath("protoc")
	testutil.Require(t, err == nil, "protoc not found (apt-get install protobuf-compiler)")
	root := testutil.RepoRoot()
	protos, err := filepath.Glob(filepath.Join(root, "proto", "*", "v1", "*.proto"))
	if err != nil || len(protos) == 0 {
		t.Fatalf("no .proto files: %v", err)
	}
	sort.Strings(protos)
	for i, p := range protos {
		protos[i], _ = filepath.Rel(root, p)
	}
	out := t.TempDir()
	args := append([]string{"-I", ".", "-I", "/usr/include", "--python_out=" + out}, protos...)
	cmd := exec.Command(protoc, args...)
	cmd.Dir = root
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, msg)
	}
	want := readTree(t, out)
	got := readTree(t, filepath.Join(root, "clients", "python", "berth", "gen"))
	for name, data := range want {
		if g, ok := got[name]; !ok {
			t.Errorf("%s: missing from clients/python/berth/gen (run make protos)", name)
		} else if !bytes.Equal(g, data) {
			t.Errorf("%s: stale (run make protos)", name)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: generated from no .proto (run make protos)", name)
		}
	}
}

// readTree returns the *_pb2.py files below dir by relative path.
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || !strings.HasSuffix(p, "_pb2.py") {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files[rel] = data
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}
