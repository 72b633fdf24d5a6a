package metadata

import (
	"context"
	"log/slog"
	"time"

	"github.com/berthrt/berth/gc"
)

// Scheduler defaults; the daemon's [gc] config overrides them.
const (
	// DefaultGCInterval is how often a collection runs regardless of
	// deletes.
	DefaultGCInterval = time.Hour
	// DefaultGCDeleteDelay is how long after a delete a collection runs,
	// so that a burst of deletes (an image and its leases) makes one.
	DefaultGCDeleteDelay = 2 * time.Second
)

// GCScheduler runs a GC on a schedule: every Interval, and DeleteDelay
// after a delete of an image, a lease, a lease's resource or a content
// record in its DB. Collect runs one at once.
type GCScheduler struct {
	gc  *GC
	cfg GCSchedulerConfig
}

// GCSchedulerConfig configures a GCScheduler. A zero Interval or a
// negative DeleteDelay turns that trigger off.
type GCSchedulerConfig struct {
	Interval    time.Duration
	DeleteDelay time.Duration
	// Log receives one line per collection that removed something and
	// every error; slog.Default when nil.
	Log *slog.Logger
	// Collected, when set, is called after every collection, scheduled
	// or asked for, with what it removed (metrics count them).
	Collected func(gc.Stats, error)
}

// NewGCScheduler returns a scheduler of gc; Run starts it.
func NewGCScheduler(gc *GC, cfg GCSchedulerConfig) *GCScheduler {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &GCScheduler{gc: gc, cfg: cfg}
}

// Collect runs one collection now, after any that is under way.
func (s *GCScheduler) Collect(ctx context.Context) (gc.Stats, error) {
	stats, err := s.gc.Collect(ctx)
	s.report(stats, err)
	return stats, err
}

// Run collects on the schedule until ctx is done. Run at most once per
// scheduler: it is the only reader of the DB's delete notices.
func (s *GCScheduler) Run(ctx context.Context) {
	var tick <-chan time.Time
	if s.cfg.Interval > 0 {
		ticker := time.NewTicker(s.cfg.Interval)
		defer ticker.Stop()
		tick = ticker.C
	}
	var deleted <-chan struct{}
	if s.cfg.DeleteDelay >= 0 {
		deleted = s.gc.db.deleted
	}
	var delay *time.Timer // armed after a delete, nil otherwise
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			if delay != nil {
				delay.Stop()
			}
			return
		case <-deleted:
			if delay == nil {
				delay = time.NewTimer(s.cfg.DeleteDelay)
				fire = delay.C
			}
			continue
		case <-tick:
		case <-fire:
		}
		if delay != nil {
			delay.Stop()
			delay, fire = nil, nil
		}
		_, _ = s.Collect(ctx)
	}
}

func (s *GCScheduler) report(stats gc.Stats, err error) {
	if s.cfg.Collected != nil {
		s.cfg.Collected(stats, err)
	}
	if err != nil {
		s.cfg.Log.Error("garbage collection", "error", err)
	}
	if stats.ContentRecords+stats.Blobs+stats.Ingests+stats.Leases+stats.Snapshots > 0 {
		s.cfg.Log.Info("garbage collection", "records", stats.ContentRecords, "blobs", stats.Blobs, "bytes", stats.BlobBytes,
			"ingests", stats.Ingests, "leases", stats.Leases, "snapshots", stats.Snapshots, "duration", stats.Duration)
	}
}
