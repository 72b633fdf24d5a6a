package main

import (
	"fmt"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/storage/snapshots"
)

// unpackInto returns the namespaced snapshotter name that pulls unpack
// into: ErrUnavailable for one that did not open, ErrNotFound for one
// the daemon does not have.
func (s *snapshotters) unpackInto(name string) (snapshots.Snapshotter, error) {
	if sn, ok := s.service.Snapshotters[name]; ok {
		return sn, nil
	}
	if err, ok := s.service.Failed[name]; ok {
		return nil, fmt.Errorf("snapshotter %q did not open: %v: %w", name, err, errdefs.ErrUnavailable)
	}
	return nil, fmt.Errorf("snapshotter %.100q: %w", name, errdefs.ErrNotFound)
}
