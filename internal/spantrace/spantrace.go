// Package spantrace records where the time of one request goes across
// berthctl, berthd and the shims: named spans on the system-wide monotonic
// clock, so that the spans of different processes line up. It is off
// unless the environment variable BERTH_TRACE names a file when a process
// starts; then every span is appended to that file as one line, in one
// write(2) on an O_APPEND descriptor, so that processes writing at once do
// not interleave within a line. Child processes inherit the variable: the
// daemon's shims trace into the same file.
//
// A line is
//
//	START_NS END_NS PID PROCESS NAME
//
// with CLOCK_MONOTONIC nanoseconds, PROCESS the program's base name (with
// its first argument when that is a subcommand, as in "berth-shim serve").
// bench/daemonbench -trace reads it (see bench/README.md).
//
// Disabled, a span costs a nil check: nothing is allocated or read.
package spantrace

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Env names the file spans are appended to.
const Env = "BERTH_TRACE"

// out is the trace file, nil when tracing is off. Set once at init and only
// read after, so it needs no lock.
var (
	out     *os.File
	process string
)

func init() {
	path := os.Getenv(Env)
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return // tracing is a debugging aid: never a reason to fail
	}
	out = f
	process = filepath.Base(os.Args[0])
	if len(os.Args) > 1 && !strings.HasPrefix(os.Args[1], "-") {
		process += "-" + os.Args[1]
	}
}

// Enabled reports whether spans are recorded.
func Enabled() bool { return out != nil }

// Now returns the monotonic clock in nanoseconds, the clock of the trace.
func Now() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}

// Span is one timed step; the zero Span (tracing off) records nothing.
type Span struct {
	name  string
	start int64
}

// Start begins a span named name.
func Start(name string) Span {
	if out == nil {
		return Span{}
	}
	return Span{name: name, start: Now()}
}

// End records the span.
func (s Span) End() {
	if out == nil || s.name == "" {
		return
	}
	Record(s.name, s.start, Now())
}

// Mark records an instant: a span of no length.
func Mark(name string) {
	if out == nil {
		return
	}
	t := Now()
	Record(name, t, t)
}

// Record appends a span with the given bounds, for a span measured by
// other means (such as one that began before the process could trace).
func Record(name string, start, end int64) {
	if out == nil {
		return
	}
	b := make([]byte, 0, 96)
	b = strconv.AppendInt(b, start, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, end, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(os.Getpid()), 10)
	b = append(b, ' ')
	b = append(b, process...)
	b = append(b, ' ')
	b = append(b, strings.ReplaceAll(name, " ", "_")...)
	b = append(b, '\n')
	out.Write(b)
}
