package cri

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/cri/netns"
)

// The sources of the pod metrics that are not a cgroup's (metrics.go):
// the filesystem that holds the writable layers, a pod's network
// interfaces, and the names of block devices.

// fsFigures are the figures of the filesystem that holds the snapshots
// and, per container, its writable layer's usage.
type fsFigures struct {
	device             string // the mount's source, e.g. /dev/vda1
	capacityBytes      uint64
	inodes, inodesFree uint64
	usedBytes          uint64 // the writable layer's, when usageKnown
	usageKnown         bool
}

// snapshotFilesystem reads the filesystem of s.cfg.ImageFSDir, as cAdvisor
// reads the device of a container's rootfs; nil (and a log line) when it
// cannot.
func (s *Server) snapshotFilesystem() *fsFigures {
	dir := s.cfg.ImageFSDir
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		s.log.Warn("no filesystem metrics", "dir", dir, "error", err)
		return nil
	}
	device := dir
	if m, err := mountOf(dir); err == nil && m.Source != "" {
		device = m.Source
	}
	return &fsFigures{
		device:        device,
		capacityBytes: st.Blocks * uint64(st.Bsize),
		inodes:        st.Files,
		inodesFree:    st.Ffree,
	}
}

// netDev is one network interface's counters.
type netDev struct {
	name                                    string
	rxBytes, rxPackets, rxErrors, rxDropped uint64
	txBytes, txPackets, txErrors, txDropped uint64
}

// podNetDevs reads the counters of the interfaces in a pod's network
// namespace, loopback left out (as cAdvisor leaves it out).
func podNetDevs(ns *netns.NetNS) ([]netDev, error) {
	var data []byte
	err := ns.Do(func() error {
		// thread-self: /proc/self/net is the namespace of the thread
		// group's leader, not of this thread.
		var err error
		data, err = os.ReadFile("/proc/thread-self/net/dev")
		return err
	})
	if err != nil {
		return nil, err
	}
	return parseNetDev(data)
}

// maxNetDevs bounds the interfaces parseNetDev reads from one namespace.
const maxNetDevs = 4096

// parseNetDev parses /proc/net/dev: two header lines, then per interface
// "name: 8 receive counters 8 transmit counters".
func parseNetDev(data []byte) ([]netDev, error) {
	var out []netDev
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 0; sc.Scan(); n++ {
		if n < 2 {
			continue // headers
		}
		if len(out) == maxNetDevs {
			return nil, fmt.Errorf("net/dev: more than %d interfaces", maxNetDevs)
		}
		name, counters, ok := strings.Cut(sc.Text(), ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return nil, fmt.Errorf("net/dev: bad line %q", sc.Text())
		}
		f := strings.Fields(counters)
		if len(f) < 16 {
			return nil, fmt.Errorf("net/dev: interface %s: %d counters, want 16", name, len(f))
		}
		var v [16]uint64
		for i := range v {
			var err error
			if v[i], err = strconv.ParseUint(f[i], 10, 64); err != nil {
				return nil, fmt.Errorf("net/dev: interface %s: %w", name, err)
			}
		}
		if name == "lo" {
			continue
		}
		// receive: bytes packets errs drop fifo frame compressed multicast;
		// transmit: bytes packets errs drop fifo colls carrier compressed.
		out = append(out, netDev{
			name: name, rxBytes: v[0], rxPackets: v[1], rxErrors: v[2], rxDropped: v[3],
			txBytes: v[8], txPackets: v[9], txErrors: v[10], txDropped: v[11],
		})
	}
	return out, sc.Err()
}

// blockDeviceName names a block device as cAdvisor does, /dev/NAME from
// the kernel's uevent of it; "MAJ:MIN" when it has none.
func blockDeviceName(major, minor uint32) string {
	id := itoa(major) + ":" + itoa(minor)
	data, err := os.ReadFile("/sys/dev/block/" + id + "/uevent")
	if err != nil {
		return id
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if name, ok := strings.CutPrefix(line, "DEVNAME="); ok && name != "" && !strings.Contains(name, "..") {
			return "/dev/" + name
		}
	}
	return id
}

func itoa(v uint32) string { return strconv.FormatUint(uint64(v), 10) }
