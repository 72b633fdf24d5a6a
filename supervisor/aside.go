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

// asideExitWait bounds the wait for the exit of a set-aside shim, which
// may still be deleting the runtime's container (task/release.go: the
// shim's own bound on that is shorter); after it the shim is killed.
const asideExitWait = 5 * time.Second

// setAside frees the name of a deleted task (marked task-deleted, its shim
// shut down): the FIFOs a client made for it go now, then the bundle is
// renamed into asideDir. It returns the folder's new path. On error the
// bundle is where it was. The runtime's state folder stays until the shim
// has exited (finishAside): a shim may still be deleting the runtime's
// container, which a removed state folder would leave half done; a new
// task of the same name waits until then (addWhenFree).
func (s *Supervisor) setAside(sh *Shim) (string, error) {
	if err := removeOwnFIFOs(sh.Bundle, s.fifoRoot()); err != nil {
		s.log.Error("remove the FIFOs of a removed task", "bundle", sh.Bundle, "error", err) // as removeBundle
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

// removeAside forgets the set-aside task sh and holds its name for
// asideGone: the returned channel is closed then.
func (s *Supervisor) removeAside(sh *Shim) chan struct{} {
	gone := make(chan struct{})
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removeLocked(sh)
	s.asides[key{sh.Namespace, sh.ID}] = gone
	return gone
}

// asideGone frees the name that removeAside held.
func (s *Supervisor) asideGone(sh *Shim, gone chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key{sh.Namespace, sh.ID}
	if s.asides[k] == gone {
		delete(s.asides, k)
	}
	close(gone)
}

// finishAside waits (bounded) for the exit of the shim watched by w, if
// any, then removes what the runtime's delete left of its state (nothing,
// unless the shim died first) and the set-aside bundle dir.
func (s *Supervisor) finishAside(sh *Shim, w *pidWatch, dir string) {
	if w != nil {
		s.waitShimExitFor(sh, w, dir, asideExitWait)
	}
	if err := os.RemoveAll(sh.runtimeState()); err != nil {
		s.log.Error("remove runtime state of deleted task", "task", sh.String(), "error", err)
	}
	if err := removeBundleFiles(dir); err != nil {
		s.log.Error("remove bundle of deleted task", "task", sh.String(), "path", dir, "error", err)
	}
}

// removeAsideBundles finishes what an earlier daemon set aside and did not
// remove before it died: it removes the folder, after the exit of a shim
// still serving from it (it was shut down, but may not have exited: it
// may still be deleting the runtime's container), which it kills when
// that takes longer than asideExitWait. It runs before Restore registers
// any shim; the waits run in the background.
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
		remove := func() {
			if err := removeBundleFiles(dir); err != nil {
				s.log.Warn("remove bundle of a deleted task", "path", dir, "error", err)
			}
		}
		pid, err := shimapi.ReadPidFile(dir)
		if err != nil || !servesFrom(pid, dir) {
			remove()
			continue
		}
		// In the background: the restore must not wait for a shim's exit.
		end := func() {
			s.endAsideShim(pid, dir)
			remove()
		}
		if !s.goroutine(end) {
			return // Close has begun
		}
	}
}

// endAsideShim ends the shim serving from the set-aside folder dir: it was
// shut down, and may still be deleting the runtime's container
// (task/release.go), so it gets asideExitWait to exit before it is
// killed.
func (s *Supervisor) endAsideShim(pid int, dir string) {
	w := s.watchPid(pid)
	defer w.close()
	if w.waitExit(s.ctx, asideExitWait) {
		return
	}
	s.log.Warn("shim of a deleted task did not exit; killing it", "path", dir, "pid", pid)
	if servesFrom(pid, dir) {
		w.kill(unix.SIGKILL)
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
