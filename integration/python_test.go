package integration

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/berthrt/berth/internal/testutil"
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

// TestPythonClient runs the Python client's tests (clients/python/tests)
// against a real berthd: version, namespaces, containers, a task run from a
// root folder to its exit code, the /tasks/exit event, error classes, and
// the framing checked byte by byte.
func TestPythonClient(t *testing.T) {
	py := python(t)
	d := newDaemon(t)
	ns := "python"
	d.nsContext(ns) // its cgroups are removed at cleanup
	cmd := exec.Command(py, "-m", "unittest", "discover", "-v", "-s", "tests")
	cmd.Dir = filepath.Join(testutil.RepoRoot(), "clients", "python")
	cmd.Env = append(os.Environ(),
		"BERTH_ADDRESS="+d.address,
		"BERTH_ROOTFS="+busyboxLower(t),
		"BERTH_NAMESPACE="+ns,
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
