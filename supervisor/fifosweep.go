package supervisor

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/berthrt/berth/identifiers"
	"github.com/berthrt/berth/internal/dirs"
	"github.com/berthrt/berth/internal/proc"
	"github.com/berthrt/berth/io/cio"
)

// fifoSweepGrace is how old a FIFO folder must be before the sweep may
// take it for a leftover: a younger one may belong to a client between
// making its FIFOs and opening them, or sending their paths to Create.
const fifoSweepGrace = time.Minute

// sweepFIFOs removes, once Restore has classified the shims, the FIFO
// folders in the daemon's FIFO dir that nothing will ever remove: a
// client that crashed between making its FIFOs and its task's Create, or
// after its task was deleted by a release that did not record stdio. A
// folder is left alone unless all of these hold: it is named as a Creator
// names one ("<id>-<digits>"); no bundle records it (a task's stdio, an
// exec's record); no bundle has its id (a task of a release without
// records); no process holds a file in it open; it is older than
// fifoSweepGrace. Only its FIFOs are removed, then the folder if empty.
func (s *Supervisor) sweepFIFOs() {
	root := s.fifoRoot()
	entries, err := os.ReadDir(root)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("sweep FIFO folders", "error", err)
		}
		return
	}
	kept, ids, err := s.fifoFoldersInUse(root)
	if err != nil {
		s.log.Warn("sweep FIFO folders", "error", err)
		return
	}
	open := proc.OpenFolders()
	removed := 0
	for _, e := range entries {
		id, ok := cio.CreatorFolderID(e.Name())
		dir := filepath.Join(root, e.Name())
		if !ok || !e.IsDir() || kept[e.Name()] || ids[id] || open[dir] {
			continue
		}
		if info, err := e.Info(); err != nil || time.Since(info.ModTime()) < fifoSweepGrace {
			continue
		}
		cfg := cio.Config{Stdin: filepath.Join(dir, "stdin"), Stdout: filepath.Join(dir, "stdout"), Stderr: filepath.Join(dir, "stderr")}
		if err := cio.RemoveCreatorFIFOs(cfg, root, id); err != nil {
			s.log.Warn("sweep FIFO folder", "path", dir, "error", err)
			continue
		}
		removed++
	}
	if removed > 0 {
		s.log.Info("removed FIFO folders that no task refers to", "count", removed, "path", root)
	}
}

// fifoFoldersInUse returns the folders under root that bundles record
// (kept), and the ids that have a bundle in some namespace.
func (s *Supervisor) fifoFoldersInUse(root string) (kept, ids map[string]bool, err error) {
	kept, ids = map[string]bool{}, map[string]bool{}
	nss, err := dirs.Names(s.cfg.StateDir)
	if err != nil {
		return nil, nil, err
	}
	for _, ns := range nss {
		if identifiers.Validate(ns) != nil {
			continue
		}
		bundles, err := dirs.Names(filepath.Join(s.cfg.StateDir, ns))
		if err != nil {
			return nil, nil, err
		}
		for _, id := range bundles {
			ids[id] = true
			bundle := filepath.Join(s.cfg.StateDir, ns, id)
			st, _ := readStdio(bundle)
			for _, folder := range cio.CreatorFolders(stdioConfig(st), root, id) {
				kept[folder] = true
			}
			for _, name := range RecordedExecFIFOFolders(bundle) {
				kept[name] = true
			}
		}
	}
	return kept, ids, nil
}
