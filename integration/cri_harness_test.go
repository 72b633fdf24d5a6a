package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/distribution"
	"github.com/berthrt/berth/internal/testimage"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/storage/content/local"
)

// criEnv is a berthd serving the CRI, with a loopback registry holding a
// busybox image and a pause image, and a CNI config of its own.
type criEnv struct {
	d       *daemon
	reg     *testutil.Registry
	rt      runtimeapi.RuntimeServiceClient
	images  runtimeapi.ImageServiceClient
	busybox string // reference of the busybox image in reg
	pause   string // the sandbox image
	// net is the test's own pod network (bridge, subnet, IPAM folder),
	// removed with the test.
	net *testutil.CNINet
	// cniData is the host-local IPAM's folder of reservations.
	cniData string
	// logDir is a folder for pods' logs.
	logDir string
}

// pauseScript is the sandbox image's command: it stays up, and exits 0 on
// TERM or INT.
const pauseScript = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait; done"

// criOpts change the CRI's test setup.
type criOpts struct {
	// plugin is the type of a CNI plugin run right after the bridge, from
	// binDir (searched before the system's).
	plugin, binDir string
}

// criOpt is an option of newCRIEnv.
type criOpt func(*criOpts)

// withCNIPlugin chains plugin (found in binDir) after the bridge.
func withCNIPlugin(plugin, binDir string) criOpt {
	return func(o *criOpts) { o.plugin, o.binDir = plugin, binDir }
}

// newCRIEnv starts the registry, pushes the images and starts berthd
// with the CRI configured for them.
func newCRIEnv(t *testing.T, opts ...criOpt) *criEnv {
	t.Helper()
	var o criOpts
	for _, opt := range opts {
		opt(&o)
	}
	testutil.RequireRoot(t, "runc", "busybox")
	e := &criEnv{reg: testutil.StartRegistry(t, testutil.RegistryConfig{}), logDir: t.TempDir()}
	e.busybox = e.reg.Addr + "/library/busybox:latest"
	e.pause = e.reg.Addr + "/pause:3.9"
	entries, err := testimage.BusyboxEntries("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	bb, err := testimage.Build(testimage.BusyboxConfig(), entries)
	if err != nil {
		t.Fatal(err)
	}
	pushTestimage(t, e.busybox, bb)
	pause, err := testimage.Build(ocispec.ImageConfig{
		Env: testimage.BusyboxConfig().Env, Entrypoint: []string{"/bin/sh", "-c", pauseScript},
	}, entries)
	if err != nil {
		t.Fatal(err)
	}
	pushTestimage(t, e.pause, pause)

	hosts := filepath.Join(t.TempDir(), e.reg.Addr)
	if err := os.MkdirAll(hosts, 0o755); err != nil {
		t.Fatal(err)
	}
	toml := fmt.Sprintf("server = %q\ncapabilities = [\"pull\", \"resolve\", \"push\"]\n", "http://"+e.reg.Addr)
	if err := os.WriteFile(filepath.Join(hosts, "hosts.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	cniConf := t.TempDir()
	e.net = testutil.NewCNINet(t)
	e.cniData = e.net.DataDir
	writeCNIConfig(t, cniConf, e.net, o.plugin)
	extra := fmt.Sprintf("[registry]\nconfig_path = %q\n[cri]\nsandbox_image = %q\n[cri.cni]\nconf_dir = %q\n",
		filepath.Dir(hosts), e.pause, cniConf)
	if o.binDir != "" {
		extra += fmt.Sprintf("bin_dirs = [%q, \"/usr/lib/cni\", \"/opt/cni/bin\"]\n", o.binDir)
	}
	e.d = newDaemon(t, withConfig(extra))
	conn, err := grpc.NewClient("unix://"+filepath.Join(e.d.state, "cri.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	e.rt, e.images = runtimeapi.NewRuntimeServiceClient(conn), runtimeapi.NewImageServiceClient(conn)
	e.waitServing(t)
	return e
}

// waitServing waits until the CRI answers: berthd answers its health
// check before the CRI socket is up.
func (e *criEnv) waitServing(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := e.rt.Version(ctx, &runtimeapi.VersionRequest{})
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the CRI did not answer: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// writeCNIConfig writes the shared bridge config made the test's own
// network's (its bridge, subnet and IPAM folder, so that parallel tests
// and the host's own cni0 never meet, and the test sees its reservations)
// into dir, with plugin (if not empty) chained right after the bridge.
func writeCNIConfig(t *testing.T, dir string, n *testutil.CNINet, plugin string) {
	t.Helper()
	conf := n.Conflist(t)
	if plugin != "" {
		plugins := conf["plugins"].([]any)
		conf["plugins"] = append([]any{plugins[0], map[string]any{"type": plugin}}, plugins[1:]...)
	}
	out, _ := json.Marshal(conf)
	if err := os.WriteFile(filepath.Join(dir, "10-berth-test.conflist"), out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// pushTestimage pushes a built image to ref over plain HTTP.
func pushTestimage(t *testing.T, ref string, img *testimage.Image) {
	t.Helper()
	ctx := context.Background()
	store, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for d, data := range img.Blobs {
		desc := ocispec.Descriptor{Digest: d, Size: int64(len(data))}
		if err := content.WriteBlob(ctx, store, "push-"+d.Encoded(), bytes.NewReader(data), desc); err != nil {
			t.Fatal(err)
		}
	}
	if err := distribution.Push(ctx, testResolver(t), store, ref, img.Manifest); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// ctx returns a context for CRI calls, bounded and ended with the test.
func (e *criEnv) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
