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

	"github.com/berthrt/berth/io/internal/fiforead"
)

// copyBufSize is the buffer of one output copier: a FIFO's default capacity.
const copyBufSize = 64 << 10

// pipes is the IO of NewCreator and NewAttach: the caller's streams copied
// to and from a FIFO set.
type pipes struct {
	fifos   *FIFOSet
	readers []*fiforead.Reader // output read ends; owned by their copiers until close
	stdin   io.ReadWriteCloser // stdin write end, nil without stdin
	ctx     context.Context    // ends at Cancel
	cancel  context.CancelFunc // gives up a stdin open that is still pending
	copying sync.WaitGroup     // output copiers

	stdinMu    sync.Mutex
	stdinEOF   bool   // guarded by stdinMu: the caller's stdin reached its end (a Creator's IO only)
	onStdinEOF func() // guarded by stdinMu: what runs at stdinEOF

	closeOnce sync.Once
	closeErr  error
}

// copyIO opens the FIFOs of set that have a stream in streams and starts
// the copiers. With stdinOnce (a Creator's IO), the end of the caller's
// stdin is the end of the process's stdin (see OnStdinEOF). On error every
// end opened so far is closed; set is left to the caller.
func copyIO(set *FIFOSet, streams *Streams, stdinOnce bool) (_ IO, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	p := &pipes{fifos: set, ctx: ctx, cancel: cancel}
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
		r, err := fiforead.Open(o.path)
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
		go p.copyIn(w, streams.Stdin, stdinOnce)
	}
	return p, nil
}

func (p *pipes) copyOut(w io.Writer, r *fiforead.Reader) {
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

// copyIn copies the caller's stdin into the FIFO and closes it at the end.
// The shim holds the FIFO open itself, so that a client going away is no
// EOF for the process (see io/stdio); with stdinOnce the end of the
// caller's reader is reported to OnStdinEOF, whose CloseIO then ends the
// process's stdin after what was copied. Any other end (an error of the
// reader or the FIFO, Cancel, Close) leaves the process's stdin open for
// the next client.
func (p *pipes) copyIn(w io.WriteCloser, r io.Reader, stdinOnce bool) {
	_, err := io.Copy(w, r)
	_ = w.Close()
	if err != nil || !stdinOnce || p.ctx.Err() != nil {
		return
	}
	p.stdinMu.Lock()
	defer p.stdinMu.Unlock()
	p.stdinEOF = true
	if p.onStdinEOF != nil {
		go p.onStdinEOF()
	}
}

// OnStdinEOF arranges for fn to run, in a goroutine of its own, once the
// caller's stdin reader of a Creator's IO has reached its end and all it
// gave is in the FIFO; at once if that happened already. It never runs for
// an Attach's IO, nor when the copy ends any other way. The client library
// passes a CloseIO of the process's stdin; a later fn replaces an earlier
// one that has not run.
func (p *pipes) OnStdinEOF(fn func()) {
	p.stdinMu.Lock()
	defer p.stdinMu.Unlock()
	p.onStdinEOF = fn
	if p.stdinEOF {
		go fn()
	}
}

func (p *pipes) Config() Config { return p.fifos.Config }

func (p *pipes) Cancel() {
	p.cancel()
	for _, r := range p.readers {
		r.Cancel()
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
		errs = append(errs, r.Close())
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

// isFIFO tells a FIFO path from none and from the shim's file outputs.
func isFIFO(path string) bool {
	return path != "" && !strings.HasPrefix(path, FilePrefix) && !strings.HasPrefix(path, CRILogPrefix)
}
