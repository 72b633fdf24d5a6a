package cio

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/errdefs"
)

const (
	// DefaultFIFODir is where a Creator makes FIFOs unless WithFIFODir
	// says otherwise. Each IO gets a folder of its own in it. It lies in
	// berthd's default state folder, whose other folders are namespaces of
	// bundles: its name begins with a dot, which no namespace does, so
	// that a restarting daemon leaves it alone.
	DefaultFIFODir = "/run/berth/.fifo"
	// FilePrefix marks an output path as a file the shim appends to,
	// rather than a FIFO: "file:///var/log/app.log".
	FilePrefix = "file://"
	// CRILogPrefix marks an output path as a file the shim appends to in
	// the CRI log format (see CRILog): "crilog:///var/log/pods/…/0.log".
	CRILogPrefix = "crilog://"
)

// Config is the stdio of a process as the daemon sees it. Each path is a
// FIFO path, for stdout and stderr a FilePrefix URI, or empty for none.
type Config struct {
	// Terminal asks for a pty; its output goes to Stdout and Stderr is
	// unused.
	Terminal bool
	Stdin    string
	Stdout   string
	Stderr   string
}

// IO is the client side of one process's stdio.
//
// Lifecycle: a Creator or Attach returns it with its copiers running. When
// the process is gone (its task or exec deleted), call Cancel, then Wait,
// then Close; Wait alone suffices when the process has exited and its
// output has drained.
type IO interface {
	// Config returns the paths to send to the daemon.
	Config() Config
	// Cancel stops waiting for the process: output copiers end as soon
	// as their FIFO is empty, and a stdin FIFO not yet opened by the
	// shim is given up.
	Cancel()
	// Wait returns when all output has been copied (or Cancel ended the
	// copying).
	Wait()
	// Close cancels, waits, closes every FIFO end and removes the FIFOs.
	Close() error
}

// Creator makes the IO of a new process; id is the container id for a
// task, the exec id for an exec process.
type Creator func(id string) (IO, error)

// Attach connects to the FIFOs of an existing process.
type Attach func(*FIFOSet) (IO, error)

// Streams is what a Creator or Attach connects a process's stdio to. A nil
// reader or writer leaves that stream unconnected.
type Streams struct {
	Stdin    io.Reader
	Stdout   io.Writer
	Stderr   io.Writer
	Terminal bool
	// FIFODir is the folder under which a Creator makes its FIFOs.
	FIFODir string
}

// Opt sets up Streams.
type Opt func(*Streams)

// WithStdio connects the process to this program's own stdin, stdout and
// stderr.
func WithStdio(s *Streams) {
	WithStreams(os.Stdin, os.Stdout, os.Stderr)(s)
}

// WithStreams connects the process to the given reader and writers; any may
// be nil. stdout and stderr may be the same writer.
func WithStreams(stdin io.Reader, stdout, stderr io.Writer) Opt {
	return func(s *Streams) {
		s.Stdin, s.Stdout, s.Stderr = stdin, stdout, stderr
	}
}

// WithTerminal asks for a pty: the process's output arrives on Stdout only.
// The spec must ask for a terminal too (oci.WithTTY).
func WithTerminal(s *Streams) {
	s.Terminal = true
}

// WithFIFODir makes the FIFOs under dir instead of DefaultFIFODir.
func WithFIFODir(dir string) Opt {
	return func(s *Streams) {
		s.FIFODir = dir
	}
}

func newStreams(opts []Opt) *Streams {
	s := &Streams{FIFODir: DefaultFIFODir}
	for _, o := range opts {
		o(s)
	}
	if s.Terminal {
		s.Stderr = nil
	}
	return s
}

// NewCreator returns a Creator that makes FIFOs for the streams the options
// name and copies between them and those streams. The end of the stdin
// reader is the end of the process's stdin: the IO reports it through
// OnStdinEOF, and the client library closes the process's stdin then.
func NewCreator(opts ...Opt) Creator {
	streams := newStreams(opts)
	return func(id string) (IO, error) {
		fifos, err := newFIFOSet(streams.FIFODir, id, streams.Terminal,
			streams.Stdin != nil, streams.Stdout != nil, streams.Stderr != nil)
		if err != nil {
			return nil, err
		}
		pio, err := copyIO(fifos, streams, true)
		if err != nil {
			return nil, errors.Join(err, fifos.Close())
		}
		return pio, nil
	}
}

// NewAttach returns an Attach that connects the streams the options name to
// the FIFOs of an existing process. Streams whose path is empty or a file
// are left alone. The end of the stdin reader is not the end of the
// process's stdin: call CloseIO for that.
func NewAttach(opts ...Opt) Attach {
	streams := newStreams(opts)
	return func(fifos *FIFOSet) (IO, error) {
		if fifos == nil {
			return nil, fmt.Errorf("attach: no FIFO set: %w", errdefs.ErrInvalidArgument)
		}
		return copyIO(fifos, streams, false)
	}
}

// NullIO is a Creator for a process without stdio: stdin reads /dev/null
// and output is discarded by the shim.
func NullIO(_ string) (IO, error) {
	return &fixedIO{}, nil
}

// LogFile returns a Creator that sends stdout and stderr to the file at
// path, which the shim creates if needed and appends to. path must be
// absolute. The file is the caller's: Close leaves it in place.
func LogFile(path string) Creator {
	return outputFile("log file", FilePrefix, path)
}

// CRILog returns a Creator that sends stdout and stderr to the file at
// path in the CRI log format (see io/stdio), for the CRI's container logs.
// path must be absolute and its folder must exist. No FIFOs: the shim
// writes the file, also while no daemon or client runs, and
// Process.ReopenLog reopens it after a rotation. The file is the caller's:
// Close leaves it in place.
func CRILog(path string) Creator {
	return outputFile("CRI log", CRILogPrefix, path)
}

// CRILogStdin is CRILog (path "" for no output) with the process's stdin
// read from the FIFO at stdin, an absolute path made here (0600, its
// folder 0700) unless it is a FIFO already. The FIFO outlives the IO: the
// shim holds it open, so writers (an attach) come and go without ending
// the process's stdin; the caller removes it when the process is gone.
// With terminal, the process gets a pty, whose output goes to the log as
// stdout.
func CRILogStdin(path, stdin string, terminal bool) Creator {
	return func(id string) (IO, error) {
		cfg := Config{Terminal: terminal}
		if path != "" {
			out, err := CRILog(path)(id)
			if err != nil {
				return nil, err
			}
			cfg = out.Config()
			cfg.Terminal = terminal
		}
		if !filepath.IsAbs(stdin) {
			return nil, fmt.Errorf("stdin FIFO %q: path must be absolute: %w", stdin, errdefs.ErrInvalidArgument)
		}
		if err := os.MkdirAll(filepath.Dir(stdin), 0o700); err != nil {
			return nil, err
		}
		if err := unix.Mkfifo(stdin, 0o600); err != nil {
			st, serr := os.Lstat(stdin)
			if !errors.Is(err, unix.EEXIST) || serr != nil || st.Mode()&os.ModeNamedPipe == 0 {
				return nil, fmt.Errorf("mkfifo %s: %w", stdin, err)
			}
		}
		cfg.Stdin = filepath.Clean(stdin)
		return &fixedIO{config: cfg}, nil
	}
}

// outputFile is a Creator of stdout and stderr both sent to prefix+path.
func outputFile(what, prefix, path string) Creator {
	return func(_ string) (IO, error) {
		if !filepath.IsAbs(path) {
			return nil, fmt.Errorf("%s %q: path must be absolute: %w", what, path, errdefs.ErrInvalidArgument)
		}
		uri := prefix + filepath.Clean(path)
		return &fixedIO{config: Config{Stdout: uri, Stderr: uri}}, nil
	}
}

// fixedIO is an IO without anything to copy: NullIO and LogFile.
type fixedIO struct {
	config Config
}

func (f *fixedIO) Config() Config { return f.config }
func (f *fixedIO) Cancel()        {}
func (f *fixedIO) Wait()          {}
func (f *fixedIO) Close() error   { return nil }
