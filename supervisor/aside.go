package supervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/shimapi"
)

// asideDir is the folder under StateDir where Delete moves the bundle of
// a deleted task, so that the task's id is free at once while its shim
// exits and the folder is removed in the background. A dot name cannot be
// a namespace, so Restore's scan and berthd check never take it for one.
const asideDir = ".deleted"

// asideSeq makes the names of set-aside folders unique within a process;
// the time in the name makes them unique across daemons.
var asideSeq atomic.Uint64

// setAside frees the id of a deleted task (marked task-deleted, its shim
// shut down): what the id names outside the bundle goes now (the FIFOs a
// client made for it, the runtime's state folder), then the bundle is
// renamed into asideDir. It returns the folder's new path. On error the
// bundle is where it was.
func (s *Supervisor) setAside(sh *Shim) (string, error) {
	if err := removeOwnFIFOs(sh.Bundle, s.fifoRoot()); err != nil {
		s.log.Error("remove the FIFOs of a removed task", "bundle", sh.Bundle, "error", err) // as removeBundle
	}
	if err := os.RemoveAll(sh.runtimeState()); err != nil {
		return "", err
	}
	root := filepath.Join(s.cfg.StateDir, asideDir)
	if err := os.MkdirAll(root, 0o700); err != nil {
		return "", err
	}
	name := fmt.Sprintf("%s.%s.%d.%d", sh.Namespace, sh.ID, time.Now().UnixNano(), asideSeq.Add(1))
	dir := filepath.Join(root, name)
	if err := unix.Renameat2(unix.AT_FDCWD, sh.Bundle, unix.AT_FDCWD, dir, unix.RENAME_NOREPLACE); err != nil {
		return "", &os.LinkError{Op: "rename", Old: sh.Bundle, New: dir, Err: err}
	}
	return dir, nil
}

// finishAside waits (bounded) for the exit of the shim watched by w, if
// any, and removes the set-aside bundle dir.
func (s *Supervisor) finishAside(sh *Shim, w *pidWatch, dir string) {
	if w != nil {
		s.waitShimExit(sh, w, dir)
	}
	if err := removeBundleFiles(dir); err != nil {
		s.log.Error("remove bundle of deleted task", "task", sh.String(), "path", dir, "error", err)
	}
}

// removeAsideBundles finishes what an earlier daemon set aside and did not
// remove before it died: it kills a shim still serving from such a folder
// (it was shut down, but may not have exited) and removes the folder. It
// runs before Restore registers any shim.
func (s *Supervisor) removeAsideBundles() {
	root := filepath.Join(s.cfg.StateDir, asideDir)
	entries, err := os.ReadDir(root)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("read folder of deleted bundles", "error", err)
		}
		return
	}
	for _, e := range entries {
		dir := filepath.Join(root, e.Name())
		if pid, err := shimapi.ReadPidFile(dir); err == nil && servesFrom(pid, dir) {
			unix.Kill(pid, unix.SIGKILL)
		}
		if err := removeBundleFiles(dir); err != nil {
			s.log.Warn("remove bundle of a deleted task", "path", dir, "error", err)
		}
	}
}

// servesFrom reports whether pid is alive and is a serving berth-shim
// whose working folder is dir: every shim works in its bundle (a spare in
// the folder that became its bundle), and the working folder follows a
// rename.
func servesFrom(pid int, dir string) bool {
	if shimapi.ServeArgs(pid) == nil {
		return false
	}
	cwd, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/cwd")
	return err == nil && cwd == dir
}
