package oci

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const (
	// oomScoreAdjMin and oomScoreAdjMax are the kernel's bounds of
	// oom_score_adj.
	oomScoreAdjMin = -1000
	oomScoreAdjMax = 1000
	// hostDevicesMax bounds how many device nodes WithHostDevices takes
	// from the host's /dev: a spec is JSON that runc reads whole.
	hostDevicesMax = 8192
)

// capabilityAll stands for every capability in WithCapabilities.
const capabilityAll = "ALL"

// AllCapabilities returns every capability this package knows, up to
// CAP_CHECKPOINT_RESTORE (Linux 5.9), in the kernel's bit order, as a new
// slice. runc ignores those the running kernel lacks.
func AllCapabilities() []string {
	return []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
		"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
		"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
		"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
		"CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
		"CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
		"CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
		"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
	}
}

// CurrentCapabilities returns the capabilities in the calling process's
// effective set that AllCapabilities knows: all a container can be given,
// since runc cannot grant what its caller lacks (root here lacks
// CAP_SYS_RESOURCE on some machines).
func CurrentCapabilities() ([]string, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, fmt.Errorf("read own capabilities: %w", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		v, ok := strings.CutPrefix(l, "CapEff:")
		if !ok {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return nil, fmt.Errorf("parse own capabilities %q: %w", v, err)
		}
		var out []string
		// AllCapabilities is in the kernel's bit order.
		for bit, name := range AllCapabilities() {
			if mask&(1<<bit) != 0 {
				out = append(out, name)
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("read own capabilities: no CapEff in /proc/self/status")
}

// normalizeCapabilities returns names as "CAP_X" in upper case ("ALL"
// stays), failing on a name this package does not know: a typo in a drop
// list must not leave a capability in place silently.
func normalizeCapabilities(names []string) ([]string, error) {
	all := AllCapabilities()
	out := make([]string, 0, len(names))
	for _, n := range names {
		c := strings.ToUpper(strings.TrimSpace(n))
		if c != capabilityAll && !strings.HasPrefix(c, "CAP_") {
			c = "CAP_" + c
		}
		if c != capabilityAll && !slices.Contains(all, c) {
			return nil, invalid("capability %q: unknown", n)
		}
		out = append(out, c)
	}
	return out, nil
}

// WithCapabilities drops the capabilities in drop, then adds those in
// add, in the bounding, effective and permitted sets; "ALL" in drop
// empties them, "ALL" in add fills them with CurrentCapabilities. Names are taken with or without
// the "CAP_" prefix, in any case. Ambient and inheritable sets are left
// alone (empty by default): a process that runs as a non-root user keeps
// none of these unless it execs a file with capabilities.
func WithCapabilities(add, drop []string) SpecOpts {
	return func(_ context.Context, s *specs.Spec) error {
		a, err := normalizeCapabilities(add)
		if err != nil {
			return err
		}
		d, err := normalizeCapabilities(drop)
		if err != nil {
			return err
		}
		p := ensureProcess(s)
		if p.Capabilities == nil {
			p.Capabilities = &specs.LinuxCapabilities{}
		}
		c := p.Capabilities
		var all []string
		if slices.Contains(a, capabilityAll) {
			if all, err = CurrentCapabilities(); err != nil {
				return err
			}
		}
		for _, set := range []*[]string{&c.Bounding, &c.Effective, &c.Permitted} {
			if slices.Contains(d, capabilityAll) {
				*set = nil
			} else {
				*set = slices.DeleteFunc(*set, func(n string) bool { return slices.Contains(d, n) })
			}
			if slices.Contains(a, capabilityAll) {
				*set = slices.Clone(all)
				continue
			}
			for _, n := range a {
				if !slices.Contains(*set, n) {
					*set = append(*set, n)
				}
			}
		}
		return nil
	}
}

// WithPrivileged gives the process every capability berthd has
// (CurrentCapabilities), unmasks /proc and
// /sys (no masked or read-only paths), mounts /sys and the cgroup
// filesystem writable, allows every device in the device cgroup and
// removes any seccomp filter: what Docker and the kubelet mean by a
// privileged container. It does not add the host's device nodes; see
// WithHostDevices. An apparmor profile or SELinux label set before is
// removed too; a privileged container runs unconfined.
func WithPrivileged(_ context.Context, s *specs.Spec) error {
	all, err := CurrentCapabilities()
	if err != nil {
		return err
	}
	p := ensureProcess(s)
	p.Capabilities = &specs.LinuxCapabilities{
		Bounding: all, Effective: slices.Clone(all), Permitted: slices.Clone(all),
	}
	p.ApparmorProfile, p.SelinuxLabel = "", ""
	l := ensureLinux(s)
	l.MaskedPaths, l.ReadonlyPaths, l.Seccomp = nil, nil, nil
	ensureResources(s).Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	for i := range s.Mounts {
		if t := s.Mounts[i].Type; t == "sysfs" || t == "cgroup" || t == "cgroup2" {
			s.Mounts[i].Options = writable(s.Mounts[i].Options)
		}
	}
	return nil
}

// writable returns opts with "ro" replaced by "rw".
func writable(opts []string) []string {
	out := slices.DeleteFunc(slices.Clone(opts), func(o string) bool { return o == "ro" || o == "rw" })
	return append(out, "rw")
}

// WithHostDevices adds every character and block device under the host's
// /dev to the container (as a privileged container sees them), except the
// ones a container has its own of (/dev/pts, /dev/shm, /dev/mqueue) and
// /dev/console. It adds no device cgroup rule: pair it with WithPrivileged
// or rules of the caller's.
func WithHostDevices(_ context.Context, s *specs.Spec) error {
	devs, err := hostDevices("/dev")
	if err != nil {
		return err
	}
	l := ensureLinux(s)
	for _, d := range devs {
		l.Devices = slices.DeleteFunc(l.Devices, func(x specs.LinuxDevice) bool { return x.Path == d.Path })
		l.Devices = append(l.Devices, d)
	}
	return nil
}

// hostDevices lists the device nodes under dir, not following symlinks.
func hostDevices(dir string) ([]specs.LinuxDevice, error) {
	skip := map[string]bool{"pts": true, "shm": true, "mqueue": true, "fd": true, ".lxc": true, ".udev": true, "console": true}
	var out []specs.LinuxDevice
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			// A node that vanished, or a folder we may not read, is not a
			// device the container could use anyway.
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
				return nil
			}
			return err
		}
		if p != dir && skip[d.Name()] && filepath.Dir(p) == dir {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.Type()&fs.ModeDevice == 0 {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return nil
		}
		typ := "c"
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			typ = "b"
		} else if st.Mode&unix.S_IFMT != unix.S_IFCHR {
			return nil
		}
		if len(out) == hostDevicesMax {
			return fmt.Errorf("host devices: more than %d under %s", hostDevicesMax, dir)
		}
		mode := os.FileMode(st.Mode & 0o7777)
		uid, gid := st.Uid, st.Gid
		out = append(out, specs.LinuxDevice{
			Path: p, Type: typ, Major: int64(unix.Major(st.Rdev)), Minor: int64(unix.Minor(st.Rdev)),
			FileMode: &mode, UID: &uid, GID: &gid,
		})
		return nil
	})
	return out, err
}

// WithMaskedPaths replaces the paths masked in the container (each made
// an empty read-only file or folder over the real one); nil or empty
// leaves none masked.
func WithMaskedPaths(paths []string) SpecOpts {
	return func(_ context.Context, s *specs.Spec) error {
		if err := absolutePaths("masked path", paths); err != nil {
			return err
		}
		ensureLinux(s).MaskedPaths = slices.Clone(paths)
		return nil
	}
}

// WithReadonlyPaths replaces the paths bind-mounted read-only over
// themselves in the container; nil or empty leaves none.
func WithReadonlyPaths(paths []string) SpecOpts {
	return func(_ context.Context, s *specs.Spec) error {
		if err := absolutePaths("read-only path", paths); err != nil {
			return err
		}
		ensureLinux(s).ReadonlyPaths = slices.Clone(paths)
		return nil
	}
}

// DefaultMaskedPaths and DefaultReadonlyPaths return the lists the
// default spec has (those containerd and CRI-O use, and the kubelet sends
// for the Default proc mount), as new slices.
func DefaultMaskedPaths() []string {
	return slices.Clone(defaultSpec("x", "x").Linux.MaskedPaths)
}

// DefaultReadonlyPaths: see DefaultMaskedPaths.
func DefaultReadonlyPaths() []string {
	return slices.Clone(defaultSpec("x", "x").Linux.ReadonlyPaths)
}

func absolutePaths(what string, paths []string) error {
	for _, p := range paths {
		if !path.IsAbs(p) || strings.ContainsRune(p, 0) {
			return invalid("%s %q: must be absolute", what, p)
		}
	}
	return nil
}

// WithAdditionalGIDs adds supplementary groups to the process, after
// those it has; a gid that is the primary group or listed already is not
// added twice.
func WithAdditionalGIDs(gids ...uint32) SpecOpts {
	return func(_ context.Context, s *specs.Spec) error {
		u := &ensureProcess(s).User
		for _, g := range gids {
			if g != u.GID && !slices.Contains(u.AdditionalGids, g) {
				u.AdditionalGids = append(u.AdditionalGids, g)
			}
		}
		return nil
	}
}

// WithGID sets the primary group of the process, keeping its uid and
// supplementary groups.
func WithGID(gid uint32) SpecOpts {
	return func(_ context.Context, s *specs.Spec) error {
		ensureProcess(s).User.GID = gid
		return nil
	}
}

// WithSELinuxLabel sets the process's SELinux label and the mount label
// of the container's filesystems. On a host without SELinux (no selinuxfs
// mounted) it does nothing, as the kernel could not apply a label and
// runc would fail the container: SELinux is the host's to enforce.
func WithSELinuxLabel(processLabel, mountLabel string) SpecOpts {
	return func(_ context.Context, s *specs.Spec) error {
		if strings.ContainsAny(processLabel+mountLabel, "\x00\n") {
			return invalid("SELinux label %q %q: bad characters", processLabel, mountLabel)
		}
		if !SELinuxEnabled() {
			return nil
		}
		ensureProcess(s).SelinuxLabel = processLabel
		ensureLinux(s).MountLabel = mountLabel
		return nil
	}
}

// SELinuxEnabled reports whether the host's kernel enforces or logs
// SELinux (selinuxfs is mounted).
func SELinuxEnabled() bool {
	_, err := os.Stat("/sys/fs/selinux/enforce")
	return err == nil
}

// AppArmorEnabled reports whether the host's kernel has AppArmor on.
func AppArmorEnabled() bool {
	b, err := os.ReadFile("/sys/module/apparmor/parameters/enabled")
	return err == nil && strings.HasPrefix(string(b), "Y")
}

// WithApparmorProfile runs the process under the AppArmor profile name,
// which must be loaded on the host. On a host without AppArmor it fails:
// a profile asked for by name is a confinement the caller relies on.
func WithApparmorProfile(name string) SpecOpts {
	return func(_ context.Context, s *specs.Spec) error {
		if name == "" || strings.ContainsAny(name, "\x00\n") {
			return invalid("apparmor profile %q: bad name", name)
		}
		if !AppArmorEnabled() {
			return invalid("apparmor profile %q: this host has no AppArmor", name)
		}
		ensureProcess(s).ApparmorProfile = name
		return nil
	}
}

// WithOOMScoreAdj sets the process's oom_score_adj. When restrict is true
// it is clamped to never be lower than the caller's own (berthd's): a
// process lacking CAP_SYS_RESOURCE may not lower a score below its own,
// and runc would fail the container. The caller learns of a clamp from
// ClampOOMScoreAdj.
func WithOOMScoreAdj(adj int, restrict bool) SpecOpts {
	return func(_ context.Context, s *specs.Spec) error {
		if adj < oomScoreAdjMin || adj > oomScoreAdjMax {
			return invalid("oom score adj %d: must be %d to %d", adj, oomScoreAdjMin, oomScoreAdjMax)
		}
		if restrict {
			var err error
			if adj, _, err = ClampOOMScoreAdj(adj); err != nil {
				return err
			}
		}
		ensureProcess(s).OOMScoreAdj = &adj
		return nil
	}
}

// ClampOOMScoreAdj returns adj raised to the calling process's own
// oom_score_adj when it is lower, and that own value.
func ClampOOMScoreAdj(adj int) (clamped, own int, err error) {
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0, 0, fmt.Errorf("read own oom_score_adj: %w", err)
	}
	own, err = strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, 0, fmt.Errorf("parse own oom_score_adj %q: %w", b, err)
	}
	return max(adj, own), own, nil
}

// WithLinuxNamespace makes the container join the namespace of type t at
// path (such as /proc/PID/ns/net or a pinned bind mount), or get a new
// one of its own when path is empty.
func WithLinuxNamespace(t specs.LinuxNamespaceType, nsPath string) SpecOpts {
	return func(_ context.Context, s *specs.Spec) error {
		if err := checkNamespaceType(t); err != nil {
			return err
		}
		if nsPath != "" && !filepath.IsAbs(nsPath) {
			return invalid("%s namespace path %q: must be absolute", t, nsPath)
		}
		l := ensureLinux(s)
		ns := specs.LinuxNamespace{Type: t, Path: nsPath}
		if i := slices.IndexFunc(l.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == t }); i >= 0 {
			l.Namespaces[i] = ns
			return nil
		}
		l.Namespaces = append(l.Namespaces, ns)
		return nil
	}
}
