package archive

import (
	"time"

	"github.com/berthrt/berth/images/progress"
)

// Progress reports of one blob's bytes come at most every
// progressInterval or progressBytes.
const (
	progressInterval = 100 * time.Millisecond
	progressBytes    = 4 << 20
)

// meter reports the bytes of one blob as they pass through Write; one
// goroutine uses it.
type meter struct {
	report   func(progress.Progress)
	p        progress.Progress
	reported int64
	at       time.Time
}

func (m *meter) Write(b []byte) (int, error) {
	m.p.Offset += int64(len(b))
	if m.p.Offset-m.reported >= progressBytes || time.Since(m.at) >= progressInterval {
		m.flush()
	}
	return len(b), nil
}

func (m *meter) flush() {
	m.reported, m.at = m.p.Offset, time.Now()
	m.report(m.p)
}
