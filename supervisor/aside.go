package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/identifiers"
	"github.com/berthrt/berth/internal/dirs"
	"github.com/berthrt/berth/internal/spantrace"
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

// asideShutdownDelay is how long the shim of a deleted task, its bundle
// set aside, waits for its Shutdown after Delete answered. The Shutdown
// starts the shim's deferred runtime delete (cleanup_on_exit,
// task/release.go: `runc delete`, 8-12 ms of CPU here), which at the
// Delete ran beside the client's last calls (a `run --rm` deletes its
// container and exits, 5-7 ms after the task's delete) and slowed them on
// 2 CPUs. The wait is cut short when a Create of the same name waits for
// the old shim's exit (addWhenFree hurries it) and when the supervisor
// closes, so that a loop that reuses a name never waits for it. Measured
// with alternating single `berthctl run --rm IMAGE` of this build and of
// the Shutdown before Delete's reply (150 pairs, both orders, twice):
// 0.95-0.97 of its time; runs back to back, new names or one name: 0.98
// to 1.04, median 1.00. See bench/README.md.
const asideShutdownDelay = 8 * time.Millisecond

// aside is a deleted task whose bundle is set aside and whose shim has not
// exited yet; it holds the task's name (Supervisor.asides).
type aside struct {
	gone      chan struct{} // closed once the shim is gone and the name free
	hurry     chan struct{} // closed by hurryUp
	hurryOnce sync.Once
	// prev is the hold on the same name that this one replaced
	// (removeAside), guarded by Supervisor.mu: a restored daemon's hold
	// for a set-aside folder (holdRestoredNames) whose name may also stand
	// for a live task's, which the release of that folder may still be
	// deleting in the runtime when the live task is deleted and set aside
	// too. Freeing this hold gives the name back to prev while prev holds.
	prev *aside
}

// hurryUp asks for the shim's Shutdown at once, without asideShutdownDelay:
// a Create of the same name waits for its exit.
func (a *aside) hurryUp() { a.hurryOnce.Do(func() { close(a.hurry) }) }

// setAside frees the name of a deleted task (marked task-deleted, its shim
// still serving: shutdownAside shuts it down later): the FIFOs a client
// made for it go now, then the bundle is renamed into asideDir. It
// returns the folder's new path. On error the bundle is where it was.
// The runtime's state folder stays until the shim has exited
// (finishAside): a shim may still be deleting the runtime's container,
// which a removed state folder would leave half done; a new task of the
// same name waits until then (addWhenFree).
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

// removeAside forgets the set-aside task sh and holds its name until
// asideGone.
func (s *Supervisor) removeAside(sh *Shim) *aside {
	a := newAside()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removeLocked(sh)
	k := key{sh.Namespace, sh.ID}
	a.prev = s.asides[k]
	s.asides[k] = a
	return a
}

func newAside() *aside { return &aside{gone: make(chan struct{}), hurry: make(chan struct{})} }

// asideGone frees the name that removeAside held.
func (s *Supervisor) asideGone(sh *Shim, a *aside) {
	s.freeAsideNames(a, key{sh.Namespace, sh.ID})
}

// freeAsideNames frees the names ks that a holds, or gives each back to
// the hold a replaced that still holds (prev), and closes a.gone.
func (s *Supervisor) freeAsideNames(a *aside, ks ...key) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := a.prev
	for p != nil && isClosed(p.gone) {
		p = p.prev
	}
	for _, k := range ks {
		if s.asides[k] != a {
			continue
		}
		if p != nil {
			s.asides[k] = p
		} else {
			delete(s.asides, k)
		}
	}
	close(a.gone)
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// holdRestoredNames holds the task names that the set-aside folders an
// earlier daemon left may stand for (names[i] is asideNames of folder i),
// each until every folder that may stand for it is finished: a new task
// of such a name waits (addWhenFree), as it would in the daemon that set
// the folder aside, rather than meet an old container in the runtime
// (runc refuses a taken id, and an old shim's deferred `runc delete
// --force` takes the id, not the bundle; two folders may stand for one
// name, and the shim of either may still serve when the other is done).
// Each folder's work calls release with its names once, when it is done.
func (s *Supervisor) holdRestoredNames(names [][]key) (release func([]key)) {
	type hold struct {
		a    *aside
		left int // folders not done yet that may stand for the name
	}
	holds := map[key]*hold{} // guarded by s.mu
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ks := range names {
		for _, k := range ks {
			h := holds[k]
			if h == nil {
				if _, ok := s.asides[k]; ok {
					continue // held already: not ours to free
				}
				h = &hold{a: newAside()}
				holds[k] = h
				s.asides[k] = h.a
			}
			h.left++
		}
	}
	return func(ks []key) {
		var free []key
		s.mu.Lock()
		for _, k := range ks {
			if h := holds[k]; h != nil {
				if h.left--; h.left == 0 {
					free = append(free, k)
				}
			}
		}
		s.mu.Unlock()
		for _, k := range free {
			s.freeAsideNames(holds[k].a, k)
		}
	}
}

// asideNames returns the task names (namespace, id) that the name of a
// folder set aside (setAside: "<namespace>.<id>.<nanoseconds>.<seq>") may
// stand for: identifiers may hold dots, so there may be more than one.
func asideNames(name string) []key {
	var ks []key
	prefix, ok := cutDigits(name)
	if ok {
		prefix, ok = cutDigits(prefix)
	}
	if !ok {
		return nil
	}
	for i := range len(prefix) {
		if prefix[i] != '.' {
			continue
		}
		ns, id := prefix[:i], prefix[i+1:]
		if identifiers.Validate(ns) == nil && identifiers.Validate(id) == nil {
			ks = append(ks, key{ns, id})
		}
	}
	return ks
}

// cutDigits cuts ".<digits>" off the end of s.
func cutDigits(s string) (string, bool) {
	i := strings.LastIndexByte(s, '.')
	if i < 0 || i == len(s)-1 {
		return s, false
	}
	for _, c := range s[i+1:] {
		if c < '0' || c > '9' {
			return s, false
		}
	}
	return s[:i], true
}

// shutdownAside shuts down the shim of the set-aside task sh, which serves
// from dir now, and closes the supervisor's connection to it (the shim's
// exit waits for that). The Shutdown comes after s.asideDelay
// (asideShutdownDelay), or at once when a Create of the name waits
// (a.hurry), when the supervisor closes (its connection to the shim is
// closed then, so a new one carries the Shutdown), or when the shim is
// gone already.
func (s *Supervisor) shutdownAside(sh *Shim, w *pidWatch, dir string, a *aside) {
	var exited <-chan struct{}
	if w != nil {
		exited = w.exited
	}
	t := time.NewTimer(s.asideDelay)
	select {
	case <-t.C:
	case <-a.hurry:
	case <-s.ctx.Done():
	case <-exited:
	}
	t.Stop()
	defer func() {
		sh.cancel()
		<-sh.done
		sh.dropConn()
	}()
	select {
	case <-exited:
		return
	default:
	}
	span := spantrace.Start("shim Shutdown")
	defer span.End()
	// Not bounded by s.ctx: Close must not keep the shim from it.
	ctx, cancel := context.WithTimeout(context.Background(), shutdownWait)
	defer cancel()
	_, err := sh.Task().Shutdown(ctx, &shimapi.ShutdownRequest{Id: sh.ID, Now: true})
	if err != nil {
		// Close ended the connection (run closes it once cancelled), or
		// it broke: say it over a new one.
		err = shimapi.ShutdownNow(ctx, dir)
	}
	if err != nil {
		s.log.Warn("shut down shim of deleted task", "task", sh.String(), "error", err)
	}
}

// finishAside waits (bounded) for the exit of the shim watched by w, if
// any, then deletes what the shim left of the runtime's container (nothing,
// unless it died before its runtime delete: releaseAsideRuntime) and
// removes the set-aside bundle dir. A folder whose container could not be
// deleted stays, for the next Restore to try again.
func (s *Supervisor) finishAside(sh *Shim, w *pidWatch, dir string) {
	if w != nil {
		s.waitShimExitFor(sh, w, dir, s.asideExitWait)
	}
	s.endAsideFolder(dir, sh.Runtime, key{sh.Namespace, sh.ID})
}

// endAsideFolder deletes, for each task name the set-aside folder dir stands
// for, what a shim gone left of the runtime's container
// (releaseAsideRuntime), then removes dir. A folder whose container could
// not be deleted stays, for the next Restore to try again.
func (s *Supervisor) endAsideFolder(dir, runtime string, names ...key) {
	var errs []error
	for _, k := range names {
		errs = append(errs, s.releaseAsideRuntime(k.ns, k.id, runtime, dir))
	}
	if err := errors.Join(errs...); err != nil {
		s.log.Error("delete the runtime's container of a deleted task; its folder stays for the next restore", "path", dir, "error", err)
		return
	}
	if err := s.removeBundleFiles(dir); err != nil {
		s.log.Error("remove bundle of deleted task", "path", dir, "error", err)
	}
}

// releaseAsideRuntime deletes the runtime's container of the task (ns, id)
// set aside in dir, when its shim is gone without having deleted it (it
// was killed or crashed, or killed by us after asideExitWait, before or
// during its deferred runtime delete: task/release.go): `berth-shim
// delete` with dir as the bundle kills what is left of the container and
// runs the runtime's forced delete, which removes the container's cgroups
// with its state; removing the state folder alone would leave the
// cgroups, and, where the delete was never started, a state that makes
// the runtime refuse a new container of the id. Then what is left of the
// state folder goes. The caller holds the name (ns, id), so no new task
// of it is being created; a bundle of the name that exists all the same
// (a task an earlier daemon created) owns the runtime's state, which is
// then left alone.
func (s *Supervisor) releaseAsideRuntime(ns, id, runtime, dir string) error {
	state := s.runtimeState(ns, id)
	if _, err := os.Lstat(state); errors.Is(err, fs.ErrNotExist) {
		return nil // the shim deleted it: the usual case
	}
	if _, err := os.Lstat(s.bundle(ns, id)); err == nil {
		s.log.Warn("runtime state of a deleted task's id belongs to a task of that name; left alone", "task", ns+"/"+id, "path", dir)
		return nil
	}
	s.log.Warn("shim of a deleted task exited before it deleted the runtime's container; deleting it", "task", ns+"/"+id, "path", dir)
	// Not bounded by s.ctx: a Close must not leave the container half
	// deleted. shimDelete bounds it by Config.CleanupTimeout.
	// The runtime calls a killed shim left (its runtime delete, maybe)
	// name the bundle's path from before the set-aside: they go too.
	if err := s.shimDelete(context.Background(), ns, id, dir, s.bundle(ns, id), runtime); err != nil {
		return err
	}
	return os.RemoveAll(state)
}

// removeAsideBundles finishes what an earlier daemon set aside and did not
// remove before it died: for each folder, after the exit of a shim still
// serving from it (endAsideShim), it deletes the runtime's container that
// the shim left, if any (releaseAsideRuntime, for each name the folder's
// name may stand for), then removes the folder. It runs before Restore
// registers any shim; the work runs in the background, holding the names.
func (s *Supervisor) removeAsideBundles() {
	root := filepath.Join(s.cfg.StateDir, asideDir)
	entries, err := os.ReadDir(root)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("read folder of deleted bundles", "error", err)
		}
		return
	}
	names := make([][]key, len(entries))
	for i, e := range entries {
		names[i] = asideNames(e.Name())
	}
	// In the background: the restore must not wait for a shim's exit or
	// a runtime's delete. The names are held until then, as in the
	// daemon that set the folders aside.
	release := s.holdRestoredNames(names)
	for i, e := range entries {
		dir := filepath.Join(root, e.Name())
		pid, err := shimapi.ReadPidFile(dir)
		live := err == nil && servesFrom(pid, dir)
		end := func() {
			defer release(names[i])
			if live {
				s.endAsideShim(pid, dir)
			}
			// Every name: another folder of the same name may have
			// checked its runtime state before this folder's shim died
			// in the middle of its runtime delete.
			s.endAsideFolder(dir, readRuntime(dir, s.cfg.Runtime), names[i]...)
		}
		if !s.goroutine(end) {
			for _, ks := range names[i:] { // Close has begun
				release(ks)
			}
			return
		}
	}
}

// endAsideShim ends the shim serving from the set-aside folder dir. The
// daemon that set it aside died before the shim's Shutdown
// (asideShutdownDelay) or while the shim exited after it, maybe still
// deleting the runtime's container (task/release.go). So it is told to
// shut down now, which starts a deferred runtime delete that still waits
// for it (a shim shut down already no longer answers), and gets
// s.asideExitWait to exit before it is killed; Close waits for that too,
// rather than kill a shim in the middle of the runtime's delete.
func (s *Supervisor) endAsideShim(pid int, dir string) {
	w := s.watchPid(pid)
	defer w.close()
	ctx, cancel := context.WithTimeout(context.Background(), shutdownWait)
	err := shimapi.ShutdownNow(ctx, dir)
	cancel()
	if err != nil {
		s.log.Debug("shut down shim of a deleted task", "path", dir, "pid", pid, "error", err)
	}
	if w.waitExit(context.Background(), s.asideExitWait) {
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

// RuntimeStateLeft returns the runtime's state folders under stateDir
// (StateDir/.runc/<namespace>/<id>) that no bundle holds and that no
// folder set aside may stand for (asideNames): berthd's start deletes the
// runtime's container of a set-aside folder (releaseAsideRuntime), but
// nothing deletes these, and each keeps its container's cgroups and its
// id taken in the runtime, which refuses a new container of it. For
// berthd check, with berthd stopped.
func RuntimeStateLeft(stateDir string) ([]string, error) {
	aside := map[key]bool{}
	entries, err := os.ReadDir(filepath.Join(stateDir, asideDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, e := range entries {
		for _, k := range asideNames(e.Name()) {
			aside[k] = true
		}
	}
	nss, err := dirs.Names(filepath.Join(stateDir, runcDir))
	if err != nil {
		return nil, err
	}
	var left []string
	for _, ns := range nss {
		ids, err := dirs.Names(filepath.Join(stateDir, runcDir, ns))
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			if _, err := os.Lstat(filepath.Join(stateDir, ns, id)); err == nil || aside[key{ns, id}] {
				continue
			}
			left = append(left, filepath.Join(stateDir, runcDir, ns, id))
		}
	}
	return left, nil
}
