package stdio

import (
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// CRILogPrefix marks an output path as a container log in the CRI format.
const CRILogPrefix = "crilog://"

const (
	// criLineMax is the most content one CRI log entry holds, as the
	// kubelet's own limit: a longer line is split into P entries of this
	// size and a last F entry.
	criLineMax = 16 << 10
	// criFlushAt bounds the entries gathered from one read before they are
	// written (a read of many short lines is written at once).
	criFlushAt = 64 << 10
	// criPartialAfter is how long an unfinished line waits for its end
	// before what there is of it is written as a P entry: a prompt or an
	// "echo -n" reaches the log (and so an attach) without waiting for a
	// newline that may never come, while a line written in quick pieces
	// still makes one entry.
	criPartialAfter = 100 * time.Millisecond
)

// criLog is one CRI log file, shared by the streams that name it. Every
// write holds mu and writes whole entries, so the entries of stdout and
// stderr interleave by line, never inside one.
type criLog struct {
	path string
	mu   sync.Mutex // one write at a time; also guards f and refs
	f    *os.File   // nil once every stream closed
	refs int        // streams writing here
}

func openCRILog(path string) (*criLog, error) {
	f, err := openCRILogFile(path)
	if err != nil {
		return nil, err
	}
	return &criLog{path: path, f: f}, nil
}

// openCRILogFile opens path for appending; its folder must exist (the CRI
// server makes it, with the pod's log directory).
func openCRILogFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_NOFOLLOW|unix.O_NOCTTY|unix.O_CLOEXEC, 0o640)
	if err != nil {
		return nil, fmt.Errorf("container log: %w", err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("container log %s: not a regular file", path)
	}
	return f, nil
}

// write appends entries. A failed write (a full disk) loses those entries,
// as a full disk loses any log; the process never waits for more than the
// write.
func (l *criLog) write(entries []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		l.f.Write(entries)
	}
}

// reopen closes the file and opens path again, creating it when it was
// renamed away (log rotation). When the new file cannot be opened, the old
// one stays in use.
func (l *criLog) reopen() error {
	l.mu.Lock()
	closed := l.f == nil
	l.mu.Unlock()
	if closed {
		return nil // the output ended: no new file for it
	}
	f, err := openCRILogFile(l.path)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		f.Close()
		return nil
	}
	old := l.f
	l.f = f
	return old.Close()
}

func (l *criLog) hold() {
	l.mu.Lock()
	l.refs++
	l.mu.Unlock()
}

func (l *criLog) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refs--
	if l.refs == 0 && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

// criStream turns one stream's output into CRI log entries:
// "<RFC3339Nano time> <stdout|stderr> <P|F> <content>\n". Only its copier
// goroutine calls write; close may come from any goroutine.
type criStream struct {
	log    *criLog
	name   string     // "stdout" or "stderr"
	mu     sync.Mutex // guards all below: close may race the copier
	closed bool
	now    func() time.Time
	// pending is the start of a line not yet written, at most criLineMax;
	// nil while empty, so a stream between lines holds no buffer.
	pending []byte
	// entries gathers the entries of one write, from entryBufs; nil
	// between writes.
	entries *[]byte
	// partialAfter is criPartialAfter; partial writes pending as a P entry
	// once the stream was quiet that long (nil until first needed).
	partialAfter time.Duration
	partial      *time.Timer
}

func newCRIStream(l *criLog, name string) *criStream {
	l.hold()
	return &criStream{log: l, name: name, now: time.Now, partialAfter: criPartialAfter}
}

// entryBufs holds the buffers CRI log entries are gathered in between
// writes, for every stream of the shim: a quiet stream holds none (see
// copyBufs).
var entryBufs = sync.Pool{New: func() any { return new([]byte) }}

// write splits p into entries: a line (without its newline) of at most
// criLineMax bytes is one F entry; a longer one is P entries of criLineMax
// bytes and a last F. An unfinished line waits in pending for the rest, at
// most criPartialAfter after the last write (then it is a P entry).
func (s *criStream) write(p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	ts := s.now()
	for len(p) > 0 {
		nl := indexNewline(p, criLineMax-len(s.pending))
		switch {
		case nl >= 0: // the line ends within the limit
			s.entry(ts, 'F', p[:nl])
			p = p[nl+1:]
		case len(s.pending)+len(p) > criLineMax: // no end within the limit
			n := criLineMax - len(s.pending)
			s.entry(ts, 'P', p[:n])
			p = p[n:]
		default:
			s.pending = append(s.pending, p...)
			p = nil
		}
		if s.entries != nil && len(*s.entries) >= criFlushAt {
			s.flush()
		}
	}
	s.flush()
	if len(s.pending) > 0 {
		if s.partial == nil {
			s.partial = time.AfterFunc(s.partialAfter, s.writePartial)
		} else {
			s.partial.Reset(s.partialAfter)
		}
	}
}

// writePartial writes the unfinished line as a P entry: its end, when it
// comes, is an entry of its own.
func (s *criStream) writePartial() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.pending) == 0 {
		return
	}
	s.entry(s.now(), 'P', nil)
	s.flush()
}

// indexNewline is the index of the first newline in p, if it is at most
// limit (the content before it fits in an entry), else -1.
func indexNewline(p []byte, limit int) int {
	if len(p) > limit+1 {
		p = p[:limit+1]
	}
	for i, b := range p {
		if b == '\n' {
			return i
		}
	}
	return -1
}

// entry adds one entry of pending followed by rest, and empties pending.
func (s *criStream) entry(ts time.Time, tag byte, rest []byte) {
	if s.entries == nil {
		s.entries = entryBufs.Get().(*[]byte)
	}
	e := ts.AppendFormat(*s.entries, time.RFC3339Nano)
	e = append(e, ' ')
	e = append(e, s.name...)
	e = append(e, ' ', tag, ' ')
	e = append(e, s.pending...)
	e = append(e, rest...)
	*s.entries = append(e, '\n')
	s.pending = nil
}

// flush writes the gathered entries and gives their buffer back.
func (s *criStream) flush() {
	if s.entries == nil {
		return
	}
	if len(*s.entries) > 0 {
		s.log.write(*s.entries)
	}
	*s.entries = (*s.entries)[:0]
	entryBufs.Put(s.entries)
	s.entries = nil
}

// close writes an unfinished last line as an F entry and lets go of the
// file.
func (s *criStream) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if s.partial != nil {
		s.partial.Stop()
	}
	if len(s.pending) > 0 {
		s.entry(s.now(), 'F', nil)
		s.flush()
	}
	s.closed = true
	s.log.release()
}
