package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"
)

// defaultDetachKeys is docker's and nerdctl's sequence.
const defaultDetachKeys = "ctrl-p,ctrl-q"

// errDetached is how a command that relays a terminal reports that the user
// typed the detach keys: not a failure (see detachedFrom).
var errDetached = errors.New("detached")

// detachReader passes on what it reads, except the detach key sequence.
// Bytes that could begin the sequence are held back until the next bytes
// tell: the whole sequence detaches (Read then returns errDetached, and
// Detached is closed; whatever followed it is dropped), anything else lets
// the held bytes through. One goroutine reads.
type detachReader struct {
	r        io.Reader
	keys     []byte
	held     []byte // a prefix of keys, read but not passed on
	out      []byte // read and to be passed on
	err      error  // of r, or errDetached: returned once out is empty
	buf      []byte
	detached chan struct{}
	closed   bool // detached is closed
}

func newDetachReader(r io.Reader, keys []byte) *detachReader {
	return &detachReader{r: r, keys: keys, detached: make(chan struct{})}
}

// Detached is closed when the sequence was read.
func (d *detachReader) Detached() <-chan struct{} { return d.detached }

func (d *detachReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for len(d.out) == 0 && d.err == nil {
		if cap(d.buf) < len(p) {
			d.buf = make([]byte, len(p))
		}
		n, err := d.r.Read(d.buf[:len(p)])
		d.feed(d.buf[:n])
		if err != nil && d.err == nil {
			// The sequence cannot complete now: what was held is input.
			d.out = append(d.out, d.held...)
			d.held = nil
			d.err = err
		}
	}
	if len(d.out) > 0 {
		n := copy(p, d.out)
		d.out = d.out[n:]
		return n, nil
	}
	if d.err == errDetached && !d.closed {
		// Only now, with every byte typed before the sequence handed
		// on: a detach must not drop pasted input.
		d.closed = true
		close(d.detached)
	}
	return 0, d.err
}

// feed moves b into out, holding back a prefix of the sequence.
func (d *detachReader) feed(b []byte) {
	for _, c := range b {
		d.held = append(d.held, c)
		// Let go of bytes from the front until what is held could still
		// begin the sequence (a partial match may restart inside it).
		for len(d.held) > 0 && !bytes.HasPrefix(d.keys, d.held) {
			d.out = append(d.out, d.held[0])
			d.held = d.held[1:]
		}
		if len(d.held) == len(d.keys) {
			d.held = nil
			d.err = errDetached
			return
		}
	}
}

// parseDetachKeys reads docker's format: comma-separated keys, each one
// character or ctrl-X (X a letter or one of @[\]^_). Empty is no sequence.
func parseDetachKeys(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	var keys []byte
	for _, k := range strings.Split(s, ",") {
		c, ok := detachKey(k)
		if !ok {
			return nil, usageError{fmt.Errorf("--detach-keys %q: %q is neither one character nor ctrl-X (X a letter or one of @[\\]^_)", s, k)}
		}
		keys = append(keys, c)
	}
	return keys, nil
}

func detachKey(k string) (byte, bool) {
	if len(k) == 1 {
		return k[0], true
	}
	x, ok := strings.CutPrefix(strings.ToLower(k), "ctrl-")
	if !ok || len(x) != 1 {
		return 0, false
	}
	switch c := x[0]; {
	case c >= 'a' && c <= 'z':
		return c - 'a' + 1, true
	case strings.IndexByte("@[\\]^_", c) >= 0:
		return c - '@', true
	}
	return 0, false
}

// registerDetachKeys adds --detach-keys to a command that can relay a
// terminal.
func registerDetachKeys(f *pflag.FlagSet, keys *string) {
	f.StringVar(keys, "detach-keys", defaultDetachKeys,
		`keys that detach from an attached terminal (-t -i) and leave the process running, e.g. "ctrl-p,ctrl-q" or "ctrl-a,d"; empty: none`)
}

// terminalStdin is the stdin a command relays to a process: os.Stdin,
// behind a detachReader when it is a terminal's (tty) and keys are set.
// detached is nil without a detachReader.
func terminalStdin(tty bool, keys []byte) (stdin io.Reader, detached <-chan struct{}) {
	if !tty || len(keys) == 0 {
		return os.Stdin, nil
	}
	d := newDetachReader(os.Stdin, keys)
	return d, d.Detached()
}

// detachedFrom turns errDetached into success with a word to the user;
// other errors pass. what names what keeps running; note says what else
// remains to know.
func detachedFrom(err error, what, note string) error {
	if !errors.Is(err, errDetached) {
		return err
	}
	// The terminal's cursor is likely after a prompt.
	fmt.Fprintf(os.Stderr, "\nberthctl: detached; %s keeps running%s\n", what, note)
	return nil
}
