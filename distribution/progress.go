package distribution

import (
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// Status is the state of one blob of a pull or push.
type Status string

const (
	// StatusWaiting: the blob waits for a free fetch or upload slot.
	StatusWaiting Status = "waiting"
	// StatusDownloading: bytes are arriving; Offset says how many.
	StatusDownloading Status = "downloading"
	// StatusUploading: bytes are leaving; Offset says how many.
	StatusUploading Status = "uploading"
	// StatusExists: the blob was there already (in the content store on
	// a pull, in the registry on a push); nothing was transferred.
	StatusExists Status = "exists"
	// StatusDone: the blob is verified and committed (pull) or accepted
	// (push).
	StatusDone Status = "done"
)

// Progress is one report about one blob.
type Progress struct {
	// Ref is the ingest ref of the blob ("pull-sha256:…"; the
	// namespaced content store keeps it as "<namespace>/pull-sha256:…"),
	// or "push-sha256:…" on a push.
	Ref       string
	Digest    digest.Digest
	MediaType string
	Status    Status
	// Offset is the bytes transferred or persisted so far; a resumed
	// download starts at the offset the ingest had reached.
	Offset int64
	// Total is the blob's size.
	Total int64
}

// ProgressFunc receives reports. Calls are serialised (one at a time, in
// the order of each blob's events) and should return quickly: a slow
// ProgressFunc slows the transfer. Reports of one blob's bytes come at
// most every progressInterval or progressBytes.
type ProgressFunc func(Progress)

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
