package diff

import (
	"io"
	"sync"
	"sync/atomic"
)

const (
	readaheadChunk = 1 << 20 // bytes per buffer
	readaheadDepth = 4       // buffers in flight
)

// readahead runs a producer (decompression) in its own goroutine,
// readaheadDepth chunks ahead of the reader, and, when given a hash,
// hashes what it produces in a third goroutine, beside the reader: the
// three stages of a layer's apply (decompressing, hashing, writing the
// files) run on up to three CPUs. The goroutine owns the buffers it
// fills until it sends them on full (and to the hasher); Read and the
// hasher each release a buffer when done with it, and the last one puts
// it back on free. Close stops the producer and waits for it and for the
// hasher: the hash is complete once the reader has met EOF and Close
// has returned.
type readahead struct {
	full chan chunk    // filled buffers, then one chunk with the error
	free chan *buffer  // empty buffers
	stop chan struct{} // closed by Close
	done chan struct{} // closed when the producer and the hasher return

	cur      []byte  // unread part of the chunk in hand
	buf      *buffer // the buffer cur is in, released when read
	err      error   // sticky, after the last chunk
	stopOnce sync.Once
}

type buffer struct {
	data []byte
	refs atomic.Int32 // holders of a filled buffer: the reader, the hasher
}

type chunk struct {
	buf *buffer
	err error
}

// release drops one holder of b; the last puts it back on free.
func (ra *readahead) release(b *buffer) {
	if b.refs.Add(-1) == 0 {
		b.data = b.data[:0]
		ra.free <- b // never blocks: free holds every buffer
	}
}

func newReadahead(hash io.Writer, produce func(w io.Writer) error) *readahead {
	ra := &readahead{
		full: make(chan chunk, readaheadDepth+1), // never blocks: depth buffers and one error
		free: make(chan *buffer, readaheadDepth),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	for range readaheadDepth {
		ra.free <- &buffer{data: make([]byte, 0, readaheadChunk)}
	}
	var hashq chan *buffer
	hashed := make(chan struct{})
	if hash != nil {
		hashq = make(chan *buffer, readaheadDepth) // never blocks: depth buffers
		go func() {
			defer close(hashed)
			for b := range hashq {
				hash.Write(b.data) // a hash.Hash's Write never fails
				ra.release(b)
			}
		}()
	} else {
		close(hashed)
	}
	go func() {
		defer close(ra.done)
		w := &chunkWriter{ra: ra, hashq: hashq}
		err := produce(w)
		if err == nil {
			err = w.flush()
		}
		if hashq != nil {
			close(hashq)
		}
		<-hashed
		if err == nil {
			err = io.EOF
		}
		ra.full <- chunk{err: err}
	}()
	return ra
}

// chunkWriter is the producer's side: it fills a buffer and sends it.
type chunkWriter struct {
	ra    *readahead
	hashq chan *buffer // nil without a hash
	buf   *buffer
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
		b := w.buf
		m := copy(b.data[len(b.data):cap(b.data)], p)
		b.data = b.data[:len(b.data)+m]
		p, n = p[m:], n+m
		if len(b.data) == cap(b.data) {
			if err := w.flush(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

func (w *chunkWriter) flush() error {
	if b := w.buf; b != nil && len(b.data) > 0 {
		if w.hashq != nil {
			b.refs.Store(2)
			w.hashq <- b
		} else {
			b.refs.Store(1)
		}
		w.ra.full <- chunk{buf: b}
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
			ra.release(ra.buf)
			ra.buf = nil
		}
		c := <-ra.full
		if c.err != nil {
			ra.err = c.err
			continue
		}
		ra.cur, ra.buf = c.buf.data, c.buf
	}
	n := copy(p, ra.cur)
	ra.cur = ra.cur[n:]
	return n, nil
}

// Close stops the producer and waits until it and the hasher have
// returned.
func (ra *readahead) Close() error {
	ra.stopOnce.Do(func() { close(ra.stop) })
	<-ra.done
	return nil
}
