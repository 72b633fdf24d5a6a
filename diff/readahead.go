package diff

import (
	"io"
	"sync"
)

const (
	readaheadChunk = 1 << 20 // bytes per buffer
	readaheadDepth = 4       // buffers in flight
)

// readahead runs a producer (decompression and hashing) in its own
// goroutine, readaheadDepth chunks ahead of the reader. The goroutine
// owns the buffers it fills until it sends them on full; Read owns them
// until it returns them on free. Close stops the producer and waits for
// it.
type readahead struct {
	full chan chunk    // filled buffers, then one chunk with the error
	free chan []byte   // empty buffers
	stop chan struct{} // closed by Close
	done chan struct{} // closed when the producer returns

	cur      []byte // unread part of the chunk in hand
	buf      []byte // the buffer cur is in, returned to free when read
	err      error  // sticky, after the last chunk
	stopOnce sync.Once
}

type chunk struct {
	data []byte
	err  error
}

func newReadahead(produce func(w io.Writer) error) *readahead {
	ra := &readahead{
		full: make(chan chunk, readaheadDepth+1), // never blocks: depth buffers and one error
		free: make(chan []byte, readaheadDepth),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	for range readaheadDepth {
		ra.free <- make([]byte, 0, readaheadChunk)
	}
	go func() {
		defer close(ra.done)
		w := &chunkWriter{ra: ra}
		err := produce(w)
		if err == nil {
			err = w.flush()
		}
		if err == nil {
			err = io.EOF
		}
		ra.full <- chunk{err: err}
	}()
	return ra
}

// chunkWriter is the producer's side: it fills a buffer and sends it.
type chunkWriter struct {
	ra  *readahead
	buf []byte
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if w.buf == nil {
			select {
			case w.buf = <-w.ra.free:
			case <-w.ra.stop:
				return n, io.ErrClosedPipe
			}
		}
		m := copy(w.buf[len(w.buf):cap(w.buf)], p)
		w.buf = w.buf[:len(w.buf)+m]
		p, n = p[m:], n+m
		if len(w.buf) == cap(w.buf) {
			if err := w.flush(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

func (w *chunkWriter) flush() error {
	if len(w.buf) > 0 {
		w.ra.full <- chunk{data: w.buf}
	}
	w.buf = nil
	return nil
}

func (ra *readahead) Read(p []byte) (int, error) {
	for len(ra.cur) == 0 {
		if ra.err != nil {
			return 0, ra.err
		}
		if ra.buf != nil {
			ra.free <- ra.buf[:0]
			ra.buf = nil
		}
		c := <-ra.full
		if c.err != nil {
			ra.err = c.err
			continue
		}
		ra.cur, ra.buf = c.data, c.data
	}
	n := copy(p, ra.cur)
	ra.cur = ra.cur[n:]
	return n, nil
}

// Close stops the producer and waits until it has returned.
func (ra *readahead) Close() error {
	ra.stopOnce.Do(func() { close(ra.stop) })
	<-ra.done
	return nil
}
