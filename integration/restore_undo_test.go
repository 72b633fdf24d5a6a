package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/supervisor"
)

// TestRestoreKilledWhileUndoingCreate: berthd is killed inside a task's
// Create (its runtime's create hangs), and the next berthd, whose Restore
// undoes that create, is killed in turn inside the undo, after `berth-shim
// delete` killed the shim and before the bundle is removed (its runtime's
// state call is held there). That leaves the bundle without a live shim
// but still marked creating; the berthd after it removes it, and berthd
// check then finds nothing. This is the state TestChaos met when it killed
// berthd for its check while Restore was still undoing a create.
func TestRestoreKilledWhileUndoingCreate(t *testing.T) {
	testutil.RequireRoot(t, "runc", "busybox")
	runc, err := exec.LookPath("runc")
	testutil.Require(t, err == nil, "runc not found in PATH")
	dir := t.TempDir()
	runtime := filepath.Join(dir, "runtime")
	createPid := filepath.Join(dir, "create.pid")
	gate := filepath.Join(dir, "gate")
	held := filepath.Join(dir, "state-held")
	// runc, except that create hangs (the runtime's pid written, then
	// sleep), and state waits while the gate file exists.
	script := fmt.Sprintf(`#!/bin/sh
for a in "$@"; do
  case "$a" in
  create) echo $$ > %[1]s; exec sleep 600 ;;
  state)
    if [ -e %[2]s ]; then
      : > %[3]s
      i=0; while [ -e %[2]s ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done
    fi ;;
  esac
done
exec %[4]s "$@"
`, createPid, gate, held, runc)
	if err := os.WriteFile(runtime, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	openGate := func() {
		if err := os.Remove(gate); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		openGate()
		if data, err := os.ReadFile(createPid); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 1 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})

	d := newDaemon(t)
	const ns, id = "undo", "undone"
	ctx := d.nsContext(ns)
	c := d.client(t, ns)
	ctr, err := c.NewContainer(ctx, id, clientSpec(t, []string{"true"}), client.WithRuntime(runtime, nil))
	if err != nil {
		t.Fatal(err)
	}
	created := make(chan error, 1)
	go func() {
		_, err := ctr.NewTask(ctx, d.creator(nil, nil, nil))
		created <- err
	}()
	eventually(t, time.Minute, "the runtime's create to hang", func() bool {
		_, err := os.Stat(createPid)
		return err == nil
	})
	bundle := d.bundle(ns, id)
	creating := filepath.Join(bundle, "creating") // the supervisor's creating marker
	d.kill()
	if err := <-created; err == nil {
		t.Fatal("the create succeeded although berthd was killed inside it")
	}
	c.Close()
	if !exists(creating) || !supervisor.BundleShimServes(bundle) {
		t.Fatalf("after a kill inside Create: creating marker %v, live shim %v; want both", exists(creating), supervisor.BundleShimServes(bundle))
	}

	// Restore undoes the create: hold it after the shim's kill.
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d.start()
	eventually(t, 30*time.Second, "Restore's berth-shim delete to call the runtime", func() bool {
		_, err := os.Stat(held)
		return err == nil
	})
	d.kill()
	if supervisor.BundleShimServes(bundle) {
		t.Error("the shim of the undone create still serves after berth-shim delete called the runtime")
	}
	if !exists(creating) {
		t.Fatal("a kill inside Restore's undo of a create left the bundle without its creating marker: the next Restore would not undo it")
	}

	openGate()
	d.start()
	d.waitRestored()
	if exists(bundle) {
		entries, _ := os.ReadDir(bundle)
		t.Errorf("the Restore after a kill inside the undo of a create left its bundle: %v", entries)
	}
	d.kill()
	if out, code := d.check(t); code != 0 {
		t.Errorf("berthd check after the undo was finished: %s", out)
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
