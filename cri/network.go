package cri

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/berthrt/berth/cri/netns"
)

// A pod's network is made in steps that each leave a durable trace, so
// that a crash at any point leaks no IP reservation and no namespace:
//
//  1. the namespace is made and pinned under NetNSDir;
//  2. the sandbox's record is saved naming it, with NetworkPending;
//  3. the CNI ADD runs (the IPAM reserves an address);
//  4. the record is saved with the IPs, NetworkPending cleared.
//
// A crash between 1 and 2 leaves a pin no record names: berthd's start
// removes it (removeStrayNetNS). A crash between 2 and 4 leaves a record
// with NetworkPending: berthd's start tears that network down (CNI DEL,
// which releases the reservation) and marks the pod stopped
// (finishInterrupted); StopPodSandbox would do the same, since it tears
// down every pod that names a namespace.

// setupNetwork runs the CNI ADD of sb, whose record says NetworkPending,
// and records its IPs.
func (s *Server) setupNetwork(ctx context.Context, sb *sandbox, undo *undoList) error {
	id, path, pod := sb.rec.ID, sb.rec.NetNS, podNetwork(sb.config)
	undo.add(func(ctx context.Context) error { return s.cfg.Network.Teardown(ctx, id, path, pod) })
	res, err := s.cfg.Network.Setup(ctx, id, path, pod)
	if err != nil {
		return fmt.Errorf("pod network: %w", err)
	}
	rec := sb.rec
	rec.IPs = append([]string{res.IP}, res.AdditionalIPs...)
	rec.NetworkPending = false
	if err := s.saveRecord(ctx, id, rec); err != nil {
		return fmt.Errorf("record the pod network: %w", err)
	}
	sb.rec = rec
	return nil
}

// finishInterrupted stops the pods whose RunPodSandbox a crash
// interrupted during their network's setup: their network is torn down
// (the IP released), their namespace removed, their record marked
// stopped, so that the kubelet, which never got their id, sees them not
// ready and removes them. Then it removes the namespace pins no record
// names. Called by Load, before the server serves.
func (s *Server) finishInterrupted(ctx context.Context) {
	named := map[string]bool{}
	var pending []*sandbox
	for _, sb := range s.sandboxes {
		if sb.rec.NetNS != "" {
			named[filepath.Base(sb.rec.NetNS)] = true
		}
		if sb.rec.NetworkPending && !sb.rec.Stopped {
			pending = append(pending, sb)
		}
	}
	for _, sb := range pending {
		ctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
		err := s.stopSandbox(ctx, sb)
		cancel()
		if err != nil {
			s.log.Error("cri: release the network of a pod whose start was interrupted", "pod", sb.rec.ID, "error", err)
			continue
		}
		s.log.Info("cri: released the network of a pod whose start was interrupted", "pod", sb.rec.ID, "netns", sb.rec.NetNS)
	}
	if err := s.removeStrayNetNS(named); err != nil {
		s.log.Warn("cri: remove stray network namespaces", "error", err)
	}
}

// removeStrayNetNS removes the pins under NetNSDir that no record names
// (a crash before the record was saved). Only Load calls it, before the
// server serves: no RunPodSandbox is under way.
func (s *Server) removeStrayNetNS(named map[string]bool) error {
	entries, err := os.ReadDir(s.cfg.NetNSDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if named[e.Name()] {
			continue
		}
		if err := netns.Load(filepath.Join(s.cfg.NetNSDir, e.Name())).Remove(); err != nil {
			errs = append(errs, err)
			continue
		}
		s.log.Info("cri: removed a network namespace no pod names", "netns", e.Name())
	}
	return errors.Join(errs...)
}
