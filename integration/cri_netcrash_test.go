package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// crashPlugin is a CNI plugin, chained after the bridge, that SIGKILLs its
// caller (berthd) at its first ADD: berthd dies once the bridge's IPAM has
// reserved the pod's address and before RunPodSandbox has recorded it.
// Later it does nothing (DEL, CHECK), as a plugin without state may.
const crashPlugin = `#!/bin/sh
cat >/dev/null
case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0","1.1.0"]}' ;;
ADD) if mkdir %q 2>/dev/null; then kill -KILL "$PPID"; sleep 60; fi; exit 1 ;;
esac
exit 0
`

// TestCRINetworkCrash kills berthd between a pod's CNI ADD and the record
// of its IP, then checks that the restarted berthd released the
// reservation, removed the namespace, shows the pod not ready, and that
// stopping and removing it leaves nothing behind.
func TestCRINetworkCrash(t *testing.T) {
	bin := t.TempDir()
	mark := filepath.Join(t.TempDir(), "crashed")
	if err := os.WriteFile(filepath.Join(bin, "berth-test-crash"), fmt.Appendf(nil, crashPlugin, mark), 0o755); err != nil {
		t.Fatal(err)
	}
	e := newCRIEnv(t, withCNIPlugin("berth-test-crash", bin))
	ctx := e.ctx(t)
	if _, err := e.images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: e.busybox}}); err != nil {
		t.Fatal(err)
	}
	podCfg := e.podConfig(t, "netcrash", false)
	if _, err := e.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg}); err == nil {
		t.Fatal("RunPodSandbox succeeded: the crash plugin did not run")
	}
	if _, err := os.Stat(mark); err != nil {
		t.Fatalf("the crash plugin did not run: %v", err)
	}
	reservations := func() []string {
		r, _ := filepath.Glob(filepath.Join(e.cniData, "*", "[0-9]*"))
		return r
	}
	if len(reservations()) != 1 {
		t.Fatalf("reservations after the crash %v: want the pod's one (else the crash missed the window)", reservations())
	}
	e.d.kill() // reaps it
	e.d.start()
	e.waitServing(t)

	if r := reservations(); len(r) != 0 {
		t.Errorf("reservations after berthd's start: %v", r)
	}
	if entries, _ := os.ReadDir(filepath.Join(e.d.state, ".cri", "netns")); len(entries) != 0 {
		t.Errorf("network namespaces after berthd's start: %v", entries)
	}
	pods, err := e.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 1 || pods.Items[0].State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Fatalf("pods after the restart: %v: want the interrupted one, not ready", pods.Items)
	}
	id := pods.Items[0].Id
	if _, err := e.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	e.checkNothingLeft(t)
}
