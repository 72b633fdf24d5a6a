package supervisor_test

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// A process that is still in a container's cgroup when the runtime deletes
// the container (a host process put there, or one of the container's on
// its way out on a loaded host) makes runc 1.1 give up on the busy
// folders after about 150 ms, report the delete done and remove its state:
// the folders were left for good. The daemon removes what the runtime left
// when it removes the bundle, once the process is gone, within its bound
// (2 s).
func TestDeleteRemovesCgroupLeftBusy(t *testing.T) {
	e := newEnv(t, "sv-cgbusy")
	s := e.supervisor(newRecorder())
	sh := e.create(s, "busy", "true")
	start(t, sh)
	wait(t, sh)
	// The lodger stays until the runtime's delete is over.
	lodger := exec.Command("sleep", "1000")
	if err := lodger.Start(); err != nil {
		t.Fatal(err)
	}
	reaped := make(chan struct{})
	go func() { lodger.Wait(); close(reaped) }()
	t.Cleanup(func() { lodger.Process.Kill(); <-reaped })
	hierarchies, err := filepath.Glob("/sys/fs/cgroup/*")
	if err != nil {
		t.Fatal(err)
	}
	joined := 0
	for _, h := range append(hierarchies, "/sys/fs/cgroup") {
		dir := filepath.Join(h, "berth", e.ns, "busy")
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(lodger.Process.Pid)), 0); err != nil {
			t.Fatalf("put the lodger in %s: %v", dir, err)
		}
		joined++
	}
	if joined == 0 {
		t.Fatal("the container has no cgroup folder under /sys/fs/cgroup/*/berth")
	}
	deleted := make(chan error, 1)
	go func() {
		_, err := s.Delete(ctx(t), e.ns, "busy")
		deleted <- err
	}()
	// runc removes its state folder once it gave up on the busy folders
	// (or removed them, which a busy folder never lets it).
	state := filepath.Join(e.stateDir, ".runc", e.ns, "busy")
	eventually(t, time.Minute, "the runtime's delete removed its state", func() bool {
		_, err := os.Stat(state)
		return errors.Is(err, fs.ErrNotExist)
	})
	lodger.Process.Kill()
	<-reaped
	if err := <-deleted; err != nil {
		t.Fatal(err)
	}
	// The bundle, set aside by the Delete, is removed once the shim exits.
	eventually(t, time.Minute, "the deleted task's folder removed", func() bool { return len(e.asideLeft(t)) == 0 })
	e.assertNoCgroup("busy")
}
