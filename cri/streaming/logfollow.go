package streaming

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// followPoll is how often a followed log is looked at for new entries.
	followPoll = 50 * time.Millisecond
	// logLineMax bounds one entry of a CRI log: the shim splits content
	// at 16 KiB, so an entry longer than this is no entry of the shim's.
	logLineMax = 64 << 10
)

// followLog copies the content of the CRI log file at path, from its
// current end, to stdout and stderr by each entry's stream (nil: dropped),
// until ctx ends or exited is closed; then what the file holds is copied
// and it returns. A rotation (the path now names another file) is
// followed: the rest of the old file, then the new one from its start.
func followLog(ctx context.Context, path string, stdout, stderr io.Writer, exited <-chan struct{}) error {
	f, err := openLogEnd(path)
	if err != nil {
		return err
	}
	return follow(ctx, f, path, stdout, stderr, exited)
}

// openLogEnd opens the log at path at its end; nil when there is none yet.
func openLogEnd(path string) (*os.File, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("container log: %w", err)
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return nil, fmt.Errorf("container log: %w", err)
	}
	return f, nil
}

// follow is followLog from f, which it closes.
func follow(ctx context.Context, f *os.File, path string, stdout, stderr io.Writer, exited <-chan struct{}) error {
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	p := logParser{stdout: stdout, stderr: stderr}
	buf := make([]byte, 32<<10)
	tick := time.NewTicker(followPoll)
	defer tick.Stop()
	last := false
	for {
		if f != nil {
			for {
				n, rerr := f.Read(buf)
				if n > 0 {
					if err := p.write(buf[:n]); err != nil {
						return err
					}
				}
				if rerr == io.EOF || n == 0 {
					break
				}
				if rerr != nil {
					return fmt.Errorf("container log: %w", rerr)
				}
			}
		}
		// Rotated (or made at last): the old file is finished; read the
		// new one from its start.
		if nf, ok := reopened(path, f); ok {
			if f != nil {
				f.Close()
			}
			f, p.partial, p.skipping = nf, p.partial[:0], false
			continue
		}
		if last {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-exited:
			last = true
		case <-tick.C:
		}
	}
}

// reopened returns the file now at path when it is not f.
func reopened(path string, f *os.File) (*os.File, bool) {
	var now unix.Stat_t
	if err := unix.Stat(path, &now); err != nil {
		return nil, false
	}
	if f != nil {
		var cur unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &cur); err == nil && cur.Dev == now.Dev && cur.Ino == now.Ino {
			return nil, false
		}
	}
	nf, err := os.Open(path)
	if err != nil {
		return nil, false
	}
	return nf, true
}

// logParser splits CRI log entries,
// "<RFC3339Nano time> <stdout|stderr> <P|F> <content>\n", and writes each
// entry's content to its stream, with the newline a full (F) entry ends.
type logParser struct {
	stdout, stderr io.Writer
	partial        []byte // an entry not ended yet
	skipping       bool   // in an overlong line, dropped up to its end
}

func (p *logParser) write(b []byte) error {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if p.skipping || len(p.partial)+len(b) > logLineMax {
				// Not the shim's: drop it up to the next line.
				p.skipping, p.partial = true, p.partial[:0]
				return nil
			}
			p.partial = append(p.partial, b...)
			return nil
		}
		if p.skipping {
			p.skipping, b = false, b[i+1:]
			continue
		}
		line := b[:i]
		if len(p.partial) > 0 {
			line = append(p.partial, line...)
			p.partial = p.partial[:0]
		}
		b = b[i+1:]
		if err := p.entry(line); err != nil {
			return err
		}
	}
	return nil
}

func (p *logParser) entry(line []byte) error {
	fields := bytes.SplitN(line, []byte(" "), 4)
	if len(fields) < 3 {
		return nil
	}
	var w io.Writer
	switch string(fields[1]) {
	case "stdout":
		w = p.stdout
	case "stderr":
		w = p.stderr
	}
	if w == nil {
		return nil
	}
	var content []byte
	if len(fields) == 4 {
		content = fields[3]
	}
	if string(fields[2]) == "F" {
		content = append(content, '\n')
	}
	if _, err := w.Write(content); err != nil {
		return fmt.Errorf("attach: write to client: %w", err)
	}
	return nil
}
