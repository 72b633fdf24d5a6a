package cio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"syscall"

	"github.com/containerd/fifo"
)

// copyBufSize is the buffer of one output copier: a FIFO's default capacity.
const copyBufSize = 64 << 10

// pipes is the IO of NewCreator and NewAttach: the caller's streams copied
// to and from a FIFO set.
type pipes struct {
	fifos   *FIFOSet
	readers []*fifoReader      // output read ends; owned by their copiers until close
	stdin   io.ReadWriteCloser // stdin write end, nil without stdin
	cancel  context.CancelFunc // gives up a stdin open that is still pending
	copying sync.WaitGroup     // output copiers

	closeOnce sync.Once
	closeErr  error
}

// copyIO opens the FIFOs of set that have a stream in streams and starts
// the copiers. On error every end opened so far is closed; set is left to
// the caller.
func copyIO(set *FIFOSet, streams *Streams) (_ IO, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	p := &pipes{fifos: set, cancel: cancel}
	defer func() {
		if err != nil {
			err = errors.Join(err, p.closeEnds())
		}
	}()
	var outMu sync.Mutex // one writer at a time, so stdout and stderr may share one
	outputs := []struct {
		path string
		w    io.Writer
	}{{set.Stdout, streams.Stdout}}
	if !set.Terminal {
		outputs = append(outputs, struct {
			path string
			w    io.Writer
		}{set.Stderr, streams.Stderr})
	}
	for _, o := range outputs {
		if o.w == nil || !isFIFO(o.path) {
			continue
		}
		r, err := openFIFOReader(o.path)
		if err != nil {
			return nil, fmt.Errorf("open output fifo: %w", err)
		}
		p.readers = append(p.readers, r)
		p.copying.Add(1)
		go p.copyOut(&lockedWriter{mu: &outMu, w: o.w}, r)
	}
	if streams.Stdin != nil && isFIFO(set.Stdin) {
		// Opens once the shim opens its end; Cancel or Close give it up.
		w, err := fifo.OpenFifo(ctx, set.Stdin, syscall.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, fmt.Errorf("open stdin fifo: %w", err)
		}
		p.stdin = w
		go copyIn(w, streams.Stdin)
	}
	return p, nil
}

func (p *pipes) copyOut(w io.Writer, r *fifoReader) {
	defer p.copying.Done()
	buf := make([]byte, copyBufSize)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				// The caller's writer failed: keep draining the FIFO
				// so that the shim is not slowed down by it.
				w = io.Discard
			}
		}
		if err != nil {
			return
		}
	}
}

// copyIn copies the caller's stdin into the FIFO and closes it at the end,
// so that the process reads EOF.
func copyIn(w io.WriteCloser, r io.Reader) {
	_, _ = io.Copy(w, r)
	_ = w.Close()
}

func (p *pipes) Config() Config { return p.fifos.Config }

func (p *pipes) Cancel() {
	p.cancel()
	for _, r := range p.readers {
		r.cancel()
	}
}

func (p *pipes) Wait() { p.copying.Wait() }

func (p *pipes) Close() error {
	p.closeOnce.Do(func() {
		p.closeErr = errors.Join(p.closeEnds(), p.fifos.Close())
	})
	return p.closeErr
}

// closeEnds cancels, waits for the output copiers and closes every FIFO end.
func (p *pipes) closeEnds() error {
	p.Cancel()
	p.copying.Wait()
	var errs []error
	for _, r := range p.readers {
		errs = append(errs, r.close())
	}
	if p.stdin != nil {
		errs = append(errs, p.stdin.Close())
	}
	return errors.Join(errs...)
}

// lockedWriter serializes the writes of the output copiers of one IO.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func isFIFO(path string) bool {
	return path != "" && !strings.HasPrefix(path, FilePrefix)
}
