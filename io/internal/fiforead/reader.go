// Package fiforead reads a FIFO without being fooled by its writers coming
// and going: a read end that waits for a first writer, tells "no writer yet"
// from "the writers have left", and can be cancelled so that it returns what
// the FIFO holds and then io.EOF. The client (io/cio) reads the output FIFOs
// with it, the shim (io/stdio) the stdin FIFO.
package fiforead

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Reader is the read end of a FIFO. It is opened non-blocking, so it is a
// reader from the moment it returns (a non-blocking open for writing
// succeeds), and it tells "no writer yet" from "the writers have come and
// gone":
//
//   - read(2) gives EAGAIN while a writer is connected and the FIFO is
//     empty: wait in the runtime poller.
//   - read(2) gives 0 when no writer is connected. Linux reports POLLHUP on
//     a FIFO reader only once a writer has connected since the reader
//     opened with none, so POLLHUP means the end; without it no writer has
//     been here yet and the reader waits for one.
//
// After Cancel, whatever the FIFO holds is still read, then Read returns
// io.EOF instead of waiting. One goroutine reads; Cancel and Close may come
// from any goroutine.
type Reader struct {
	f         *os.File
	rc        syscall.RawConn
	cancelled atomic.Bool
}

// Open opens the FIFO at path (not a symlink to one) for reading.
func Open(path string) (*Reader, error) {
	st, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode()&fs.ModeNamedPipe == 0 {
		return nil, fmt.Errorf("%s: not a FIFO", path)
	}
	// What the path names now, checked through a descriptor that opens
	// nothing (a folder on the way may have been swapped since the
	// Lstat), and only then opened for reading: a file, device or
	// terminal swapped in is never opened.
	pf, err := os.OpenFile(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer pf.Close()
	if err := IsFIFO(pf); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", pf.Fd()), os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Reader{f: f, rc: rc}, nil
}

func (r *Reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var (
		n    int
		rerr error
	)
	err := r.rc.Read(func(fd uintptr) bool {
		n, rerr = readFIFO(int(fd), p)
		if n > 0 || (rerr != nil && rerr != unix.EAGAIN) {
			return true
		}
		// Nothing to read: the end once cancelled, or once the writers
		// have left. Either may have come after that read, together
		// with bytes a writer wrote meanwhile (it came, wrote and left;
		// or wrote, then Cancel came): those are read first.
		if afterEmptyRead != nil {
			afterEmptyRead()
		}
		if !r.cancelled.Load() && (rerr != nil || !writerGone(int(fd))) {
			return false
		}
		n, rerr = readFIFO(int(fd), p)
		switch {
		case n > 0 || (rerr != nil && rerr != unix.EAGAIN):
			return true
		case rerr == unix.EAGAIN && !r.cancelled.Load():
			return false // a writer is back: wait for it
		}
		n, rerr = 0, io.EOF
		return true
	})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return r.drain(p)
	}
	if err != nil {
		return 0, err
	}
	if n == 0 && rerr == nil {
		rerr = io.EOF
	}
	return n, rerr
}

// drain reads what the FIFO holds after cancel (the poller refuses to read
// past the deadline cancel set).
func (r *Reader) drain(p []byte) (int, error) {
	var (
		n    int
		rerr error
	)
	if err := r.rc.Control(func(fd uintptr) { n, rerr = readFIFO(int(fd), p) }); err != nil {
		return 0, err
	}
	if n > 0 {
		return n, nil
	}
	if rerr != nil && rerr != unix.EAGAIN {
		return 0, rerr
	}
	return 0, io.EOF
}

// Cancel makes Read return io.EOF once the FIFO is empty, and wakes a Read
// that waits.
func (r *Reader) Cancel() {
	r.cancelled.Store(true)
	_ = r.f.SetReadDeadline(time.Unix(1, 0))
}

// Close cancels and closes the read end.
func (r *Reader) Close() error {
	r.Cancel()
	return r.f.Close()
}

// afterEmptyRead, when set (by tests), runs in Read after a read that
// found nothing, before Read asks whether that is the end: where a writer
// may come, write and leave, or Cancel come.
var afterEmptyRead func()

func readFIFO(fd int, p []byte) (int, error) {
	for {
		n, err := unix.Read(fd, p)
		if err == unix.EINTR {
			continue
		}
		if n < 0 {
			n = 0
		}
		return n, err
	}
}

// writerGone reports whether a writer has connected and left (see
// Reader).
func writerGone(fd int) bool {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(pfd, 0)
		if err == unix.EINTR {
			continue
		}
		return err == nil && pfd[0].Revents&unix.POLLHUP != 0
	}
}

// OpenWriter opens the same FIFO for writing, non-blocking (it succeeds:
// this reader is there). It goes through the reader's descriptor rather
// than the path, so it is that FIFO even if the path was replaced since.
// While a writer is open the FIFO never reads as ended: a holder of one
// keeps its reader from seeing EOF when other writers come and go.
func (r *Reader) OpenWriter() (*os.File, error) {
	var (
		w    *os.File
		werr error
	)
	if err := r.rc.Control(func(fd uintptr) {
		w, werr = os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", fd), os.O_WRONLY|unix.O_NONBLOCK, 0)
	}); err != nil {
		return nil, err
	}
	return w, werr
}

// IsFIFO fails unless f is an open FIFO.
func IsFIFO(f *os.File) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("%s: %w", f.Name(), err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return fmt.Errorf("%s: not a FIFO", f.Name())
	}
	return nil
}
