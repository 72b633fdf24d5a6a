package oci

import (
	"context"
	"fmt"
	"path"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthrt/berth/identifiers"
)

// SpecOpts changes a spec; GenerateSpec applies them in order.
type SpecOpts func(ctx context.Context, s *specs.Spec) error

const (
	defaultPATH     = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	defaultRootPath = "rootfs"
	// cgroupParent is where every container's cgroup lives, one level per
	// namespace.
	cgroupParent = "/berth"
	// defaultNOFILE is the soft and hard open-file limit.
	defaultNOFILE = 1024
)

// GenerateSpec returns the default spec for container id in namespace, with
// opts applied. Both must be valid identifiers. The hostname is id, cut to
// the kernel's 64 bytes; the cgroup is /berth/<namespace>/<id>.
func GenerateSpec(ctx context.Context, namespace, id string, opts ...SpecOpts) (*specs.Spec, error) {
	if err := identifiers.Validate(namespace); err != nil {
		return nil, fmt.Errorf("namespace: %w", err)
	}
	if err := identifiers.Validate(id); err != nil {
		return nil, fmt.Errorf("container id: %w", err)
	}
	s := defaultSpec(namespace, id)
	for _, o := range opts {
		if err := o(ctx, s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func defaultSpec(namespace, id string) *specs.Spec {
	return &specs.Spec{
		Version:  specs.Version,
		Root:     &specs.Root{Path: defaultRootPath},
		Hostname: id[:min(len(id), hostnameMax)],
		Process: &specs.Process{
			Args: []string{"sh"},
			Cwd:  "/",
			Env:  []string{defaultPATH},
			User: specs.User{UID: 0, GID: 0},
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  defaultCaps(),
				Effective: defaultCaps(),
				Permitted: defaultCaps(),
			},
			Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: defaultNOFILE, Soft: defaultNOFILE}},
		},
		Mounts: defaultMounts(),
		Linux: &specs.Linux{
			CgroupsPath: path.Join(cgroupParent, namespace, id),
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace},
				{Type: specs.MountNamespace},
				{Type: specs.NetworkNamespace},
			},
			MaskedPaths: []string{
				"/proc/acpi",
				"/proc/asound",
				"/proc/kcore",
				"/proc/keys",
				"/proc/latency_stats",
				"/proc/sched_debug",
				"/proc/scsi",
				"/proc/timer_list",
				"/proc/timer_stats",
				"/sys/devices/virtual/powercap",
				"/sys/firmware",
			},
			ReadonlyPaths: []string{
				"/proc/bus",
				"/proc/fs",
				"/proc/irq",
				"/proc/sys",
				"/proc/sysrq-trigger",
			},
			Resources: &specs.LinuxResources{Devices: defaultDevices()},
		},
	}
}

// defaultCaps returns a new slice each call: the three sets must not share
// an array, or changing one would change the others.
func defaultCaps() []string {
	return []string{
		"CAP_CHOWN",
		"CAP_DAC_OVERRIDE",
		"CAP_FSETID",
		"CAP_FOWNER",
		"CAP_MKNOD",
		"CAP_NET_RAW",
		"CAP_SETGID",
		"CAP_SETUID",
		"CAP_SETFCAP",
		"CAP_SETPCAP",
		"CAP_NET_BIND_SERVICE",
		"CAP_SYS_CHROOT",
		"CAP_KILL",
		"CAP_AUDIT_WRITE",
	}
}

func defaultMounts() []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
	}
}

// defaultDevices denies every device, then allows the character devices a
// shell and a terminal need.
func defaultDevices() []specs.LinuxDeviceCgroup {
	allow := func(major, minor int64) specs.LinuxDeviceCgroup {
		d := specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: &major, Access: "rwm"}
		if minor >= 0 {
			d.Minor = &minor
		}
		return d
	}
	const anyMinor = -1
	return []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		allow(1, 3),          // /dev/null
		allow(1, 5),          // /dev/zero
		allow(1, 7),          // /dev/full
		allow(1, 8),          // /dev/random
		allow(1, 9),          // /dev/urandom
		allow(5, 0),          // /dev/tty
		allow(5, 2),          // /dev/ptmx
		allow(136, anyMinor), // /dev/pts/*
	}
}
