package cri

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"time"
)

const (
	// outputMax is the size past which a container's own output file
	// (outputPath) is rotated: attach needs its recent output only, and
	// the file lives in the state folder, often memory.
	outputMax = 1 << 20
	// outputCheck is how often the output files are looked at; a
	// container writes at most what it can in this time past outputMax.
	outputCheck = 10 * time.Second
	// rotatedSuffix names the one rotated output kept beside the file.
	rotatedSuffix = ".1"
)

// rotateOutputs bounds the output files of the running containers that
// have no CRI log, as the kubelet bounds the CRI logs it knows, until the
// server closes.
func (s *Server) rotateOutputs() {
	t := time.NewTicker(outputCheck)
	defer t.Stop()
	ctx := nsContext(s.bgContext())
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		var ctrs []*container
		for _, c := range s.containers {
			if c.rec.LogPath == "" {
				ctrs = append(ctrs, c)
			}
		}
		s.mu.Unlock()
		for _, c := range ctrs {
			if err := s.rotateOutput(ctx, c); err != nil && ctx.Err() == nil {
				s.log.Warn("cri: rotate a container's output", "container", c.rec.ID, "error", err)
			}
		}
	}
}

// rotateOutput moves container c's output file aside, replacing the one
// moved before, once it is larger than outputMax, and has the shim write
// a new one at its path; an attach that follows it goes on to the new.
func (s *Server) rotateOutput(ctx context.Context, c *container) error {
	p := s.outputPath(c.rec.ID)
	st, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && st.Size() <= outputMax) {
		return nil
	}
	if err != nil {
		return err
	}
	_, task, err := s.runningTask(ctx, c)
	if err != nil {
		return nil // not running: it writes no more
	}
	if err := os.Rename(p, p+rotatedSuffix); err != nil {
		return err
	}
	return task.ReopenLog(ctx)
}
