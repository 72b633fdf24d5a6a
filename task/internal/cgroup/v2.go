package cgroup

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/shimapi"
)

// cgroupV2 reads the container's folder in the unified hierarchy.
type cgroupV2 struct {
	dir string
	oom oomWatch // the inotify descriptor watching memory.events
}

func (c *cgroupV2) Metrics() (*shimapi.Metrics, error) {
	m := &shimapi.Metrics{CgroupVersion: 2}
	var usage, user, system uint64
	var errs []error
	read := func(name string, fn func(string) error) {
		errs = append(errs, ignoreNotExist(fn(filepath.Join(c.dir, name))))
	}
	// v2 reports microseconds.
	read("cpu.stat", keyedFile(map[string]*uint64{"usage_usec": &usage, "user_usec": &user, "system_usec": &system}))
	m.CpuUsageNs, m.CpuUserNs, m.CpuKernelNs = usage*1000, user*1000, system*1000
	read("memory.current", uintFile(&m.MemoryUsageBytes))
	read("memory.peak", uintFile(&m.MemoryMaxUsageBytes)) // since Linux 5.19
	read("memory.max", uintFile(&m.MemoryLimitBytes))
	read("memory.stat", keyedFile(map[string]*uint64{"anon": &m.MemoryRssBytes, "file": &m.MemoryCacheBytes}))
	read("memory.events", keyedFile(map[string]*uint64{"oom_kill": &m.OomEvents}))
	read("pids.current", uintFile(&m.PidsCurrent))
	read("pids.max", uintFile(&m.PidsLimit))
	read("io.stat", ioStatFile(m)) // hierarchical: the cgroup and its descendants
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

// WatchOOM watches memory.events with inotify, which the kernel notifies
// on every change, and calls fn when its oom_kill count grows.
func (c *cgroupV2) WatchOOM(fn func()) error {
	path := filepath.Join(c.dir, "memory.events")
	var last uint64
	if err := keyedFile(map[string]*uint64{"oom_kill": &last})(path); err != nil {
		return err
	}
	ifd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return os.NewSyscallError("inotify_init1", err)
	}
	in := os.NewFile(uintptr(ifd), "memory-events-inotify")
	if _, err := unix.InotifyAddWatch(ifd, path, unix.IN_MODIFY); err != nil {
		in.Close()
		return &fs.PathError{Op: "inotify_add_watch", Path: path, Err: err}
	}
	c.oom.set(in)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := in.Read(buf)
			if err != nil {
				return
			}
			if watchRemoved(buf[:n]) { // the cgroup is gone
				return
			}
			var kills uint64
			if keyedFile(map[string]*uint64{"oom_kill": &kills})(path) != nil {
				continue
			}
			if kills > last {
				last = kills
				fn()
			}
		}
	}()
	return nil
}

// watchRemoved reports whether a batch of inotify events holds IN_IGNORED:
// the watched file was removed.
func watchRemoved(buf []byte) bool {
	for len(buf) >= unix.SizeofInotifyEvent {
		// struct inotify_event: wd int32 at 0, mask uint32 at 4, cookie
		// uint32 at 8, len uint32 at 12, then len bytes of name.
		mask := binary.NativeEndian.Uint32(buf[4:8])
		nameLen := int(binary.NativeEndian.Uint32(buf[12:16]))
		if mask&unix.IN_IGNORED != 0 {
			return true
		}
		if unix.SizeofInotifyEvent+nameLen > len(buf) {
			return false
		}
		buf = buf[unix.SizeofInotifyEvent+nameLen:]
	}
	return false
}

func (c *cgroupV2) Close() { c.oom.close() }
