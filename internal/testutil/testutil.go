// Package testutil holds what berth's tests share: the rule for missing
// environment (skip on a developer's machine, fail in CI), building the
// binaries, busybox root filesystems and bundles.
package testutil

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthrt/berth/internal/testenv"
	"github.com/berthrt/berth/oci"
)

// InCI reports whether the tests run in CI (package testenv).
func InCI() bool { return testenv.InCI() }

// Require fails the test in CI and skips it elsewhere when ok is false
// (package testenv).
func Require(t testing.TB, ok bool, why string) {
	t.Helper()
	testenv.Require(t, ok, why)
}

// RequireRoot requires root and the given commands in PATH (package
// testenv).
func RequireRoot(t testing.TB, commands ...string) {
	t.Helper()
	testenv.RequireRoot(t, commands...)
}

// RepoRoot returns the module's root folder.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

var (
	buildMu  sync.Mutex
	buildDir string            // guarded by buildMu
	built    map[string]string // guarded by buildMu: binary name to path
)

// packages maps each binary to its main package.
var packages = map[string]string{"berth-shim": "./cmd/shim", "berthd": "./cmd/daemon", "berthctl": "./cmd/ctl"}

// Binary returns the path of a berth binary ("berth-shim", "berthd",
// "berthctl") built from this tree once per test process into a folder
// that Cleanup removes.
func Binary(t testing.TB, name string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[name]; ok {
		return p
	}
	pkg, ok := packages[name]
	if !ok {
		t.Fatalf("no binary %q", name)
	}
	if buildDir == "" {
		dir, err := os.MkdirTemp("", "berth-bin-")
		if err != nil {
			t.Fatal(err)
		}
		buildDir, built = dir, map[string]string{}
	}
	out := filepath.Join(buildDir, name)
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = RepoRoot()
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, msg)
	}
	built[name] = out
	return out
}

// Cleanup removes what Binary built; call it from TestMain after m.Run.
func Cleanup() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// BusyboxRootfs fills dir with a minimal root filesystem made of the
// host's static busybox: /bin/busybox, a link per applet, /etc/passwd and
// the usual empty mount points.
func BusyboxRootfs(t testing.TB, dir string) {
	t.Helper()
	busybox, err := exec.LookPath("busybox")
	Require(t, err == nil, "busybox not found (apt-get install busybox-static)")
	if err := MakeBusyboxRootfs(busybox, dir); err != nil {
		t.Fatal(err)
	}
}

// MakeBusyboxRootfs is BusyboxRootfs for callers outside tests.
func MakeBusyboxRootfs(busybox, dir string) error {
	out, err := exec.Command("file", "-L", busybox).Output()
	if err == nil && !strings.Contains(string(out), "statically linked") && !strings.Contains(string(out), "static-pie") {
		return fmt.Errorf("%s is not statically linked (apt-get install busybox-static)", busybox)
	}
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp", "root", "var", "run"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	os.Chmod(filepath.Join(dir, "tmp"), 0o1777)
	data, err := os.ReadFile(busybox)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), data, 0o755); err != nil {
		return err
	}
	list, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", applet)); err != nil && !os.IsExist(err) {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":  "root:x:0:\nnogroup:x:65534:\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// WriteSpec generates a spec with opts and writes it as bundle/config.json.
func WriteSpec(t testing.TB, bundle, id string, opts ...oci.SpecOpts) *specs.Spec {
	t.Helper()
	spec, err := oci.GenerateSpec(context.Background(), "test", id, opts...)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return spec
}
