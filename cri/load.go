package cri

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/cri/netns"
	"github.com/berthrt/berth/errdefs"
)

// Load rebuilds the index from the CRI records in the daemon's containers
// (after a restart of berthd), and watches again the containers that run.
// A container that was running and has no task any more exited while no
// one watched: it is recorded as exited with reason Unknown. Every exit
// Load records is announced once by WatchEvents' pump.
func (s *Server) Load(ctx context.Context) error {
	ctx = nsContext(ctx)
	list, err := s.client.Containers(ctx, `labels."`+KindLabel+`"`)
	if err != nil {
		return fmt.Errorf("cri: list containers: %w", err)
	}
	var ctrs []*container
	known := map[string]bool{} // every berth container of the CRI, read or not
	for _, ctr := range list {
		info, err := ctr.Info(ctx)
		if err != nil {
			return err
		}
		known[info.ID] = true
		switch info.Labels[KindLabel] {
		case KindSandbox:
			sb := &sandbox{config: &runtimeapi.PodSandboxConfig{}}
			if err := decodeRecord(info, &sb.rec); err != nil {
				s.log.Warn("cri: sandbox left out", "id", info.ID, "error", err)
				continue
			}
			if err := proto.Unmarshal(sb.rec.Config, sb.config); err != nil {
				s.log.Warn("cri: sandbox left out", "id", info.ID, "error", err)
				continue
			}
			if sb.rec.NetNS != "" {
				sb.netns = netns.Load(sb.rec.NetNS)
			}
			s.sandboxes[sb.rec.ID] = sb
			s.names[sandboxName(sb.config.GetMetadata())] = sb.rec.ID
		case KindContainer:
			var rec containerRecord
			cfg := &runtimeapi.ContainerConfig{}
			if err := decodeRecord(info, &rec); err != nil {
				s.log.Warn("cri: container left out", "id", info.ID, "error", err)
				continue
			}
			if err := proto.Unmarshal(rec.Config, cfg); err != nil {
				s.log.Warn("cri: container left out", "id", info.ID, "error", err)
				continue
			}
			ctrs = append(ctrs, newContainer(rec, cfg))
		}
	}
	go s.watchOOM()
	go s.rotateOutputs()
	for _, c := range ctrs {
		s.containers[c.rec.ID] = c
		if sb := s.sandboxes[c.rec.SandboxID]; sb != nil {
			s.names[containerName(c.config.GetMetadata(), sb.config.GetMetadata())] = c.rec.ID
		}
		if err := s.remountImageMounts(ctx, c); err != nil {
			s.log.Warn("cri: mount a container's image mounts again", "id", c.rec.ID, "error", err)
		}
		if c.rec.Exited || (c.rec.StartedAt.IsZero() && !c.rec.Starting) {
			continue
		}
		if err := s.rewatch(ctx, c); err != nil {
			s.log.Warn("cri: watch container", "id", c.rec.ID, "error", err)
		}
	}
	s.sweepImageMounts(ctx, known)
	s.finishInterrupted(ctx)
	return nil
}

// rewatch watches the task of a container that was running, or records
// its exit when the task is gone.
func (s *Server) rewatch(ctx context.Context, c *container) error {
	ctr, err := s.client.LoadContainer(ctx, c.rec.ID)
	if err != nil {
		return err
	}
	task, err := ctr.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		rec := c.rec
		rec.Starting, rec.Exited, rec.ExitCode, rec.Reason = false, true, 255, reasonUnknown
		rec.Message = "the container's task was gone when berthd started"
		if rec.FinishedAt.IsZero() {
			rec.FinishedAt = time.Now().UTC()
		}
		if err := s.saveRecord(ctx, rec.ID, rec); err != nil {
			return err
		}
		c.rec = rec
		close(c.exited)
		s.loadExits = append(s.loadExits, c.rec.ID)
		return nil
	}
	if err != nil {
		return err
	}
	if c.rec.Starting {
		// Started, but the start was not recorded: it is now.
		rec := c.rec
		rec.Starting, rec.StartedAt = false, time.Now().UTC()
		if err := s.saveRecord(ctx, rec.ID, rec); err != nil {
			return err
		}
		c.rec = rec
	}
	exitc, err := task.Wait(s.bgContext())
	if err != nil {
		return err
	}
	if st, err := task.Status(ctx); err == nil && st.Status == client.Stopped {
		// It exited while berthd was down: its exit is recorded before
		// the server serves, so that no one sees it running; the pump
		// announces it (WatchEvents).
		s.watchExit(c, task, exitc)
		s.loadExits = append(s.loadExits, c.rec.ID)
		return nil
	}
	go s.watchExit(c, task, exitc)
	return nil
}
