package supervisor

import (
	"context"
	"fmt"

	"github.com/berthrt/berth/errdefs"
)

// Ready waits until the task's shim is settled: connected (created or
// restored) or found dead and cleaned up. API calls for a task wait here,
// so that a daemon that has just started answers for each task as soon as
// that task's shim is known, without waiting for the others.
func (sh *Shim) Ready(ctx context.Context) error {
	select {
	case <-sh.classified:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("task %s: its shim is still being reconnected: %w", sh, errdefs.ErrUnavailable)
	}
}

// Dying reports whether the shim was found dead and its cleanup is under
// way; Reaped is closed when the cleanup is done and Exited answers.
func (sh *Shim) Dying() bool { return sh.getState() == stateReaping }

// Reaped is closed once the death of the shim was handled in full.
func (sh *Shim) Reaped() <-chan struct{} { return sh.reaped }

// ShimPid returns the pid of the shim process as last connected, or 0.
func (sh *Shim) ShimPid() int {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.shimPid
}
