package distribution

import (
	"sync"
	"time"

	"github.com/berthrt/berth/images/progress"
)

// Status is the state of one blob of a pull or push; the type lives in
// package images/progress, which clients read without linking this one.
type Status = progress.Status

// The statuses of a blob; see package images/progress.
const (
	StatusWaiting     = progress.StatusWaiting
	StatusDownloading = progress.StatusDownloading
	StatusUploading   = progress.StatusUploading
	StatusExists      = progress.StatusExists
	StatusDone        = progress.StatusDone
)

// Progress is one report about one blob (package images/progress).
type Progress = progress.Progress

// ProgressFunc receives reports. Calls are serialised (one at a time, in
// the order of each blob's events) and should return quickly: a slow
// ProgressFunc slows the transfer. Reports of one blob's bytes come at
// most every progressInterval or progressBytes.
type ProgressFunc = progress.Func

const (
	progressInterval = 100 * time.Millisecond
	progressBytes    = 4 << 20
)

// reporter serialises the calls of a ProgressFunc.
type reporter struct {
	mu sync.Mutex // one call of fn at a time
	fn ProgressFunc
}

func (r *reporter) report(p Progress) {
	if r == nil || r.fn == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fn(p)
}

// meter reports the bytes of one transfer as they pass through Write;
// it is used by one goroutine.
type meter struct {
	r        *reporter
	p        Progress
	reported int64
	at       time.Time
}

func (m *meter) add(n int) {
	m.p.Offset += int64(n)
	if m.p.Offset-m.reported >= progressBytes || time.Since(m.at) >= progressInterval {
		m.flush()
	}
}

func (m *meter) flush() {
	m.reported, m.at = m.p.Offset, time.Now()
	m.r.report(m.p)
}
