package cio

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// FIFOSet is the FIFOs of one process and how to remove them.
type FIFOSet struct {
	Config

	closeOnce sync.Once
	close     func() error
	closeErr  error
}

// NewFIFOSet returns a set for the paths in config; Close calls close (which
// may be nil) once.
func NewFIFOSet(config Config, close func() error) *FIFOSet {
	return &FIFOSet{Config: config, close: close}
}

// Close removes the FIFOs as the set's maker arranged. Safe on nil and more
// than once.
func (f *FIFOSet) Close() error {
	if f == nil {
		return nil
	}
	f.closeOnce.Do(func() {
		if f.close != nil {
			f.closeErr = f.close()
		}
	})
	return f.closeErr
}

// NewFIFOSetInDir makes a folder of its own under root (created 0700 if
// needed) with a FIFO for stdin, stdout and, without a terminal, stderr.
// Close removes the folder.
func NewFIFOSetInDir(root, id string, terminal bool) (*FIFOSet, error) {
	return newFIFOSet(root, id, terminal, true, true, !terminal)
}

func newFIFOSet(root, id string, terminal, stdin, stdout, stderr bool) (*FIFOSet, error) {
	if !stdin && !stdout && !stderr {
		// No folder: the daemon would report no path, so after a crash of
		// this client nobody could find it to remove it.
		return NewFIFOSet(Config{Terminal: terminal}, nil), nil
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("fifo dir: %w", err)
	}
	dir, err := os.MkdirTemp(root, id+"-")
	if err != nil {
		return nil, fmt.Errorf("fifo dir for %q: %w", id, err)
	}
	set := NewFIFOSet(Config{Terminal: terminal}, func() error { return os.RemoveAll(dir) })
	for _, s := range []struct {
		want bool
		name string
		path *string
	}{
		{stdin, "stdin", &set.Stdin},
		{stdout, "stdout", &set.Stdout},
		{stderr && !terminal, "stderr", &set.Stderr},
	} {
		if !s.want {
			continue
		}
		p := filepath.Join(dir, s.name)
		if err := unix.Mkfifo(p, 0o600); err != nil {
			return nil, errors.Join(fmt.Errorf("mkfifo %s: %w", p, err), set.Close())
		}
		*s.path = p
	}
	return set, nil
}

// LoadFIFOs returns the set of an existing process from the paths the
// daemon reports. Its Close removes those paths that are FIFOs (never a
// file, nor a "file://" or "crilog://" output) and then their folders once empty.
func LoadFIFOs(config Config) *FIFOSet {
	return NewFIFOSet(config, func() error {
		var errs []error
		dirs := map[string]bool{}
		for _, p := range []string{config.Stdin, config.Stdout, config.Stderr} {
			if !isFIFO(p) {
				continue
			}
			st, err := os.Lstat(p)
			if err != nil || st.Mode()&fs.ModeNamedPipe == 0 {
				continue
			}
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			dirs[filepath.Dir(p)] = true
		}
		for d := range dirs {
			// Fails, as it should, when the folder holds anything else.
			_ = os.Remove(d)
		}
		return errors.Join(errs...)
	})
}
