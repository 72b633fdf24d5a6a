// Package proc answers questions about processes from /proc, for the
// daemon side and for tests alike, so that they agree.
package proc

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Alive reports whether pid names a process that has not exited. A zombie
// (state Z) or a dying process (X) has exited. A process we may not
// signal (EPERM) is alive as long as /proc shows it.
func Alive(pid int) bool {
	if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
		return false
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses, which may hold
	// anything, so look after the last ')'.
	if i := bytes.LastIndexByte(data, ')'); i >= 0 && i+2 < len(data) {
		return data[i+2] != 'Z' && data[i+2] != 'X'
	}
	return true
}
