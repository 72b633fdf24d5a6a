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
