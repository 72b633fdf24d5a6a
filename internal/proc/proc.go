// Package proc answers questions about processes from /proc, for the
// daemon side and for tests alike, so that they agree.
package proc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Alive reports whether pid names a process that has not exited. A zombie
// (state Z) or a dying process (X) has exited. A process we may not
// signal (EPERM) is alive as long as /proc shows it.
func Alive(pid int) bool {
	if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
		return false
	}
	st, err := State(pid)
	return err == nil && st != 'Z' && st != 'X'
}

// State returns pid's state letter from /proc/PID/stat (R, S, D, T, Z,
// …); an error when there is no such process.
func State(pid int) (byte, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The state follows the command name in parentheses, which may hold
	// anything, so look after the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 >= len(data) {
		return 0, fmt.Errorf("/proc/%d/stat: no state in %q", pid, data)
	}
	return data[i+2], nil
}

// Children returns the pids of pid's children, from the lists of all its
// threads (a child belongs to the thread that forked it).
func Children(pid int) []int {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var out []int
	for _, t := range tasks {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		for _, f := range strings.Fields(string(data)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// WithEnv returns the pids of the processes whose environment, as they
// were started with it (/proc/PID/environ), holds entry ("NAME=value")
// exactly. A process that set the variable only after it started is not
// among them; one that exits meanwhile may be.
func WithEnv(entry string) []int {
	want := []byte(entry)
	return withField("environ", func(f []byte) bool { return bytes.Equal(f, want) })
}

// WithArgPrefix returns the pids of the processes one of whose command
// line arguments begins with prefix. A zombie has no command line left,
// so it is not among them.
func WithArgPrefix(prefix string) []int {
	want := []byte(prefix)
	return withField("cmdline", func(f []byte) bool { return bytes.HasPrefix(f, want) })
}

// withField returns the pids of the processes whose NUL-separated
// /proc/PID/<file> has a field that match accepts.
func withField(file string, match func([]byte) bool) []int {
	dirs, _ := os.ReadDir("/proc")
	var out []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + d.Name() + "/" + file)
		if err != nil {
			continue
		}
		for f := range bytes.SplitSeq(data, []byte{0}) {
			if match(f) {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}

// OpenFolders returns the folders of every file that some process holds
// open, from /proc/*/fd. Processes that exit meanwhile, or whose
// descriptors we may not read, are left out.
func OpenFolders() map[string]bool {
	folders := map[string]bool{}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		fdDir := "/proc/" + p.Name() + "/fd"
		fds, _ := os.ReadDir(fdDir)
		for _, fd := range fds {
			if target, err := os.Readlink(fdDir + "/" + fd.Name()); err == nil && strings.HasPrefix(target, "/") {
				folders[target[:max(strings.LastIndexByte(target, '/'), 1)]] = true
			}
		}
	}
	return folders
}
