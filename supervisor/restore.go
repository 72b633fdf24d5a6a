package supervisor

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/berthrt/berth/identifiers"
	"github.com/berthrt/berth/internal/dirs"
	"github.com/berthrt/berth/internal/fsperm"
	"github.com/berthrt/berth/shimapi"
)

// slowDialMax caps the growing dial bound for a shim that neither answers
// nor is provably dead.
const slowDialMax = 2 * time.Second

// Restore finds the shims of an earlier daemon: every bundle under
// StateDir/<namespace>/<id>. See the package documentation for the
// algorithm. It returns once every shim is classified, or after
// Config.RestoreTimeout, or when ctx ends; shims not classified by then go
// on in the background (Get finds them in the meantime; their Task calls
// fail with ErrUnavailable). Tasks already known are left alone, so
// calling Restore again is harmless.
func (s *Supervisor) Restore(ctx context.Context) error {
	wait, err := s.StartRestore(ctx)
	if err != nil {
		return err
	}
	return wait()
}

// StartRestore is Restore in two steps: it registers every bundle found
// (Get and List see each from then on, and Shim.Ready waits for its fate)
// and starts reconnecting, then returns; wait does the rest of Restore. A
// daemon calls it before it serves, so that no call can miss a task, and
// waits in the background, so that no shim holds its readiness hostage.
func (s *Supervisor) StartRestore(ctx context.Context) (wait func() error, err error) {
	began := time.Now()
	if err := fsperm.Restrict(s.cfg.StateDir, StatePerm); err != nil {
		return nil, err
	}
	// Only this daemon's own deletes set bundles aside after this.
	s.asideOnce.Do(s.removeAsideBundles)
	found, err := s.scan()
	if err != nil {
		return nil, err
	}
	for _, sh := range found {
		if !s.goroutine(sh.restore) {
			break // Close has begun
		}
	}
	s.removeStaleSpares()
	return func() error {
		pending := s.waitClassified(ctx, found)
		running, stopped := 0, 0
		for _, sh := range found {
			switch sh.getState() {
			case stateRunning:
				running++
			case stateStopped:
				stopped++
			}
		}
		s.log.Info("restored shims", "found", len(found), "running", running, "stopped", stopped,
			"pending", pending, "took", time.Since(began))
		s.sweepFIFOsOnce.Do(s.sweepFIFOs)
		// Only now: starting a spare would compete with the reconnects
		// for the CPU while the daemon is not serving every task yet.
		s.startSpares()
		return ctx.Err()
	}, nil
}

// waitClassified waits until every shim of found is classified, the
// restore bound passed, or ctx or the supervisor ended. It returns how many
// are not classified yet.
func (s *Supervisor) waitClassified(ctx context.Context, found []*Shim) int {
	timeout := time.NewTimer(s.cfg.RestoreTimeout)
	defer timeout.Stop()
	for i, sh := range found {
		select {
		case <-sh.classified:
		case <-timeout.C:
			return pendingIn(found[i:])
		case <-ctx.Done():
			return pendingIn(found[i:])
		case <-s.ctx.Done():
			return pendingIn(found[i:])
		}
	}
	return 0
}

func pendingIn(shims []*Shim) int {
	n := 0
	for _, sh := range shims {
		select {
		case <-sh.classified:
		default:
			n++
		}
	}
	return n
}

// scan registers every bundle not yet known as a shim in stateRestoring.
func (s *Supervisor) scan() ([]*Shim, error) {
	namespaces, err := dirs.Names(s.cfg.StateDir)
	if err != nil {
		return nil, err
	}
	var found []*Shim
	for _, ns := range namespaces {
		if err := identifiers.Validate(ns); err != nil {
			s.log.Warn("restore: skipping folder that is no namespace", "path", filepath.Join(s.cfg.StateDir, ns), "error", err)
			continue
		}
		ids, err := dirs.Names(filepath.Join(s.cfg.StateDir, ns))
		if err != nil {
			s.log.Error("restore: read namespace folder", "namespace", ns, "error", err)
			continue
		}
		// An earlier release made these folders looser.
		if err := fsperm.Restrict(filepath.Join(s.cfg.StateDir, ns), namespacePerm); err != nil {
			s.log.Error("restore: restrict namespace folder", "namespace", ns, "error", err)
		}
		for _, id := range ids {
			if err := identifiers.Validate(id); err != nil {
				s.log.Warn("restore: skipping folder that is no bundle", "path", filepath.Join(s.cfg.StateDir, ns, id), "error", err)
				continue
			}
			// A bundle has its creating marker from its first moment
			// until the task exists, its config.json from before the
			// shim starts until the task is deleted, and a half-removed
			// one its task-deleted marker. Any other folder is not
			// berth's to clean up.
			if emptyDir(s.bundle(ns, id)) {
				// A daemon killed between the bundle's mkdir and its
				// creating marker: nothing to undo, and the id is free.
				if err := os.Remove(s.bundle(ns, id)); err == nil {
					s.log.Info("restore: removed an empty bundle folder", "path", s.bundle(ns, id))
				}
				continue
			}
			if !hasMarker(s.bundle(ns, id), specFileName) && !hasMarker(s.bundle(ns, id), deletedMarker) &&
				!hasMarker(s.bundle(ns, id), creatingMarker) && !halfRemoved(s.bundle(ns, id)) {
				s.log.Warn("restore: skipping folder without config.json", "path", s.bundle(ns, id))
				continue
			}
			spec, _ := os.ReadFile(filepath.Join(s.bundle(ns, id), specFileName)) // none: bundlePerm
			if err := restrictBundle(s.bundle(ns, id), spec); err != nil {
				s.log.Error("restore: restrict bundle", "path", s.bundle(ns, id), "error", err)
			}
			sh := s.newShim(ns, id, readRuntime(s.bundle(ns, id), s.cfg.Runtime), stateRestoring)
			if sh.stdio, err = readStdio(s.bundle(ns, id)); err != nil {
				s.log.Warn("restore: stdio record", "path", s.bundle(ns, id), "error", err)
			}
			if err := s.add(sh); err != nil {
				sh.cancel()
				continue // known already, or Close has begun
			}
			found = append(found, sh)
		}
	}
	return found, nil
}

// halfRemoved reports whether bundle, which has no config.json and no
// marker of the supervisor's, is what a removal that failed half-way left
// of a bundle: `berth-shim delete` marked it, or a shim's pid file is
// still in it (a shim, or a process it started, was still writing into it
// when the folder was removed). Its task is gone; its shim may still run.
func halfRemoved(bundle string) bool {
	return hasMarker(bundle, shimapi.DeletedName) || hasMarker(bundle, shimapi.PidFileName)
}

// emptyDir reports whether dir is a folder with nothing in it.
func emptyDir(dir string) bool {
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	return len(names) == 0 && errors.Is(err, io.EOF)
}

// restore classifies one shim found on disk and takes it from there.
func (sh *Shim) restore() {
	if hasMarker(sh.Bundle, deletedMarker) {
		sh.finishDelete("restore: finished delete of task")
		return
	}
	if !hasMarker(sh.Bundle, specFileName) && !hasMarker(sh.Bundle, creatingMarker) {
		// halfRemoved: a removal that failed half-way, after its
		// config.json was gone.
		sh.finishDelete("restore: finished removal of a half-removed bundle")
		return
	}
	if hasMarker(sh.Bundle, creatingMarker) {
		// Its Create never returned: nobody was told of this task.
		sh.finishDelete("restore: removed a task whose create an earlier daemon did not finish")
		return
	}
	if hasMarker(sh.Bundle, reapedMarker) {
		sh.setState(stateReaping, stateRestoring)
		sh.reap(true)
		return
	}
	dial := sh.s.cfg.DialTimeout
	b := newBackoff(50*time.Millisecond, time.Second)
	for {
		ctx, cancel := context.WithTimeout(sh.ctx, dial)
		c, err := sh.connect(ctx)
		cancel()
		if err == nil {
			if c.info.TaskDeleted {
				sh.finishLiveDelete(c)
				return
			}
			if !sh.setState(stateRunning, stateRestoring) {
				c.client.Close()
				return
			}
			sh.startRunning(c)
			sh.markClassified()
			return
		}
		if sh.ctx.Err() != nil {
			return
		}
		if deadDial(err) || !sh.pidServes() {
			sh.s.log.Info("restore: shim is gone", "task", sh.String(), "error", err)
			sh.setState(stateReaping, stateRestoring)
			sh.reap(false)
			return
		}
		// Alive but slow: go on in the background with a longer bound.
		sh.s.log.Warn("restore: shim is slow to answer; retrying", "task", sh.String(), "dial_timeout", dial, "error", err)
		dial = min(2*dial, slowDialMax)
		if b.wait(sh.ctx) != nil {
			return
		}
	}
}

// pidServes reports whether the pid in the bundle's pid file is a live
// berth-shim serving this bundle.
func (sh *Shim) pidServes() bool { return BundleShimServes(sh.Bundle) }

// BundleShimServes reports whether the pid in bundle's pid file is a live
// berth-shim serving that bundle (a stale pid file whose pid was reused
// does not count).
func BundleShimServes(bundle string) bool {
	pid, err := shimapi.ReadPidFile(bundle)
	return err == nil && shimapi.ServesBundle(pid, bundle)
}

// finishDelete completes the Delete of a task that an earlier daemon
// interrupted after the TaskDelete was published, or undoes a Create it
// did not finish: whatever is left of the shim and the container is
// killed and the bundle removed, and done is logged. The task is not
// registered and no event is published.
func (sh *Shim) finishDelete(done string) {
	defer sh.markClassified()
	sh.setState(stateDeleting, stateRestoring)
	defer sh.s.remove(sh)
	err := sh.shimDelete(sh.ctx)
	if err == nil {
		err = sh.s.removeBundle(sh.Bundle, sh.runtimeState())
	}
	if err != nil {
		sh.s.log.Error("restore: finish delete of task", "task", sh.String(), "error", err)
		return
	}
	sh.s.log.Info(done, "task", sh.String())
}

// finishLiveDelete completes the Delete of a task whose shim deleted the
// container while an earlier daemon was killed before it shut the shim
// down: the task is gone before it is classified, rather than a live shim
// holding nothing, which Get would show but no State call could answer.
// The shim runs first, so that the events it still holds (its TaskDelete,
// when no daemon acked it) are forwarded.
func (sh *Shim) finishLiveDelete(c *conn) {
	defer sh.markClassified()
	sh.deleteMu.Lock()
	defer sh.deleteMu.Unlock()
	if !sh.setState(stateRunning, stateRestoring) {
		c.client.Close()
		return
	}
	sh.startRunning(c)
	if _, err := sh.s.deleteLive(sh.s.ctx, sh, sh.deletedResponse()); err != nil {
		sh.s.log.Error("restore: finish delete of task", "task", sh.String(), "error", err)
		return
	}
	sh.s.log.Info("restore: finished delete of task whose shim had deleted the container", "task", sh.String())
}
