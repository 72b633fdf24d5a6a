package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/berthrt/berth/shimapi"
)

// procRoot is where the shim, in the host's PID namespace, sees every
// process of the container.
const procRoot = "/proc"

// maxProcesses bounds the processes whose descriptors one Metrics call
// counts: a cgroup that holds more (a fork bomb under no pids limit)
// reports the processes it has but no descriptor counts, rather than
// making the shim walk them all.
const maxProcesses = 1 << 14

// readProcesses counts the processes listed in procsFile (a cgroup.procs)
// and their open descriptors and sockets into m. A process that exits
// meanwhile is skipped.
func readProcesses(procsFile string, m *shimapi.Metrics) error {
	var pids []string
	err := eachLine(procsFile, func(line string) error {
		if line = strings.TrimSpace(line); line != "" {
			pids = append(pids, line)
		}
		return nil
	})
	if err != nil {
		return err
	}
	m.Processes = uint64(len(pids))
	if len(pids) > maxProcesses {
		return nil
	}
	for _, pid := range pids {
		if _, err := strconv.ParseUint(pid, 10, 32); err != nil {
			return fmt.Errorf("%s: bad pid %q", procsFile, pid)
		}
		fds, sockets, err := countFDs(procRoot + "/" + pid + "/fd")
		if err != nil {
			return err
		}
		m.FileDescriptors += fds
		m.Sockets += sockets
	}
	return nil
}

// countFDs counts the entries of a /proc/PID/fd folder and those that
// are sockets (their link reads "socket:[INODE]"). A process gone, or a
// descriptor closed, while it reads is not an error: it counts what was
// there.
func countFDs(dir string) (fds, sockets uint64, err error) {
	f, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, os.ErrPermission) {
		// Gone, or a zombie whose descriptors the kernel already closed.
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, 0, err
	}
	for _, name := range names {
		fds++
		if target, err := os.Readlink(dir + "/" + name); err == nil && strings.HasPrefix(target, "socket:") {
			sockets++
		}
	}
	return fds, sockets, nil
}

// nofileFile returns a reader of a /proc/PID/limits file that stores the
// soft limit of "Max open files" into dst ("unlimited" reads as 0).
func nofileFile(dst *uint64) func(string) error {
	return func(path string) error {
		return eachLine(path, func(line string) error {
			rest, ok := strings.CutPrefix(line, "Max open files")
			if !ok {
				return nil
			}
			fields := strings.Fields(rest)
			if len(fields) == 0 {
				return fmt.Errorf("%s: bad line %q", path, line)
			}
			if fields[0] == "unlimited" {
				*dst = 0
				return nil
			}
			v, err := strconv.ParseUint(fields[0], 10, 64)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			*dst = v
			return nil
		})
	}
}

// procPath is the /proc folder of pid; "" (nothing to read) for none.
func procPath(pid int) string {
	if pid <= 0 {
		return ""
	}
	return procRoot + "/" + strconv.Itoa(pid)
}
