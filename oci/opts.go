package oci

import (
	"context"
	"fmt"
	"maps"
	"math"
	"path"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthrt/berth/errdefs"
)

const (
	// cpuPeriod is the CFS period WithCPUs uses, in microseconds (100 ms).
	cpuPeriod = 100000
	// cpuQuotaMin is the smallest CFS quota the kernel accepts, in
	// microseconds (1 ms).
	cpuQuotaMin = 1000
	// hostnameMax is the kernel's limit on a hostname, in bytes.
	hostnameMax = 64
)

// invalid returns an error of class errdefs.ErrInvalidArgument.
func invalid(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, errdefs.ErrInvalidArgument)...)
}

// WithProcessArgs sets the command and its arguments; args[0] is the
// program.
func WithProcessArgs(args ...string) SpecOpts {
	return func(_ context.Context, s *specs.Spec) error {
		if len(args) == 0 || args[0] == "" {
			return invalid("process args %q: need a program as the first", args)
		}
		ensureProcess(s).Args = slices.Clone(args)
		return nil
	}
}

// WithEnv sets environment variables given as KEY=VALUE: an entry replaces
// the one with the same key, or is appended.
func WithEnv(kv []string) SpecOpts {
	return func(_ context.Context, s *specs.Spec) error {
		for _, e := range kv {
			if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
				return invalid("env %q: want KEY=VALUE", e)
			}
		}
		p := ensureProcess(s)
		for _, e := range kv {
			p.Env = setEnv(p.Env, e)
		}
		return nil
	}
}

// WithProcessCwd sets the working folder, an absolute path in the
// container.
func WithProcessCwd(dir string) SpecOpts {
	return func(_ context.Context, s *specs.Spec) error {
		if !path.IsAbs(dir) {
			return invalid("process cwd %q: must be absolute", dir)
		}
		ensureProcess(s).Cwd = dir
		return nil
	}
}

// WithTTY gives the process a terminal, and sets TERM=xterm unless TERM is
// set already.
func WithTTY(_ context.Context, s *specs.Spec) error {
	p := ensureProcess(s)
	p.Terminal = true
	if !slices.ContainsFunc(p.Env, func(e string) bool { return strings.HasPrefix(e, "TERM=") }) {
		p.Env = append(p.Env, "TERM=xterm")
	}
	return nil
}

// WithRootFSPath sets the root filesystem's path, absolute or relative to
// the bundle.
func WithRootFSPath(p string) SpecOpts {
	return func(_ context.Context, s *specs.Spec) error {
		if p == "" {
			return invalid("rootfs path: must not be empty")
		}
		ensureRoot(s).Path = p
		return nil
	}
}

// WithRootFSReadonly makes the root filesystem read-only.
func WithRootFSReadonly(_ context.Context, s *specs.Spec) error {
	ensureRoot(s).Readonly = true
	return nil
}

// WithHostname sets the hostname (of the container's uts namespace).
func WithHostname(name string) SpecOpts {
	return func(_ context.Context, s *specs.Spec) error {
		if name == "" || len(name) > hostnameMax {
			return invalid("hostname %q: must be 1 to %d bytes", name, hostnameMax)
		}
		s.Hostname = name
		return nil
	}
}

// WithHostNamespace makes the container share the host's namespace of type
// ns instead of getting its own. For the network namespace it also mounts
// the host's /etc/resolv.conf and /etc/hosts read-only, so names resolve as
// on the host, unless the spec mounts something there already.
func WithHostNamespace(ns specs.LinuxNamespaceType) SpecOpts {
	return func(_ context.Context, s *specs.Spec) error {
		if err := checkNamespaceType(ns); err != nil {
			return err
		}
		l := ensureLinux(s)
		l.Namespaces = slices.DeleteFunc(l.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == ns })
		if ns == specs.NetworkNamespace {
			for _, f := range []string{"/etc/resolv.conf", "/etc/hosts"} {
				if !hasMount(s.Mounts, f) {
					s.Mounts = append(s.Mounts, specs.Mount{
						Destination: f, Type: "bind", Source: f, Options: []string{"rbind", "ro"},
					})
				}
			}
		}
		return nil
	}
}

// WithMounts adds mounts after the existing ones; a mount whose destination
// already has one replaces it in place.
func WithMounts(mounts []specs.Mount) SpecOpts {
	return func(_ context.Context, s *specs.Spec) error {
		for _, m := range mounts {
			if !path.IsAbs(m.Destination) {
				return invalid("mount destination %q: must be absolute", m.Destination)
			}
		}
		for _, m := range mounts {
			m.Options = slices.Clone(m.Options)
			s.Mounts = setMount(s.Mounts, m)
		}
		return nil
	}
}

// WithUIDGID sets the user and primary group the process runs as, with no
// supplementary groups: those an earlier WithUser or WithImageConfig set
// belong to the user it named, and a process that kept them would hold
// that user's groups (often root's, or wheel) under the new uid and gid
// (the CVE-2023-25173 pattern).
func WithUIDGID(uid, gid uint32) SpecOpts {
	return func(_ context.Context, s *specs.Spec) error {
		u := &ensureProcess(s).User
		u.UID, u.GID, u.AdditionalGids = uid, gid, nil
		return nil
	}
}

// WithMemoryLimit limits the container's memory to limit bytes.
func WithMemoryLimit(limit uint64) SpecOpts {
	return func(_ context.Context, s *specs.Spec) error {
		if limit == 0 || limit > math.MaxInt64 {
			return invalid("memory limit %d: must be 1 to %d bytes", limit, int64(math.MaxInt64))
		}
		r := ensureResources(s)
		if r.Memory == nil {
			r.Memory = &specs.LinuxMemory{}
		}
		l := int64(limit)
		r.Memory.Limit = &l
		return nil
	}
}

// WithCPUs limits the container to cpus CPUs' worth of time (1.5: one and
// a half), as a CFS quota over a 100 ms period.
func WithCPUs(cpus float64) SpecOpts {
	return func(_ context.Context, s *specs.Spec) error {
		quota := math.Round(cpus * cpuPeriod)
		if math.IsNaN(cpus) || quota < cpuQuotaMin || quota >= math.MaxInt64 {
			return invalid("cpus %v: must be at least %v", cpus, float64(cpuQuotaMin)/cpuPeriod)
		}
		r := ensureResources(s)
		if r.CPU == nil {
			r.CPU = &specs.LinuxCPU{}
		}
		q, p := int64(quota), uint64(cpuPeriod)
		r.CPU.Quota, r.CPU.Period = &q, &p
		return nil
	}
}

// WithPidsLimit limits the number of tasks (processes and threads) in the
// container.
func WithPidsLimit(limit int64) SpecOpts {
	return func(_ context.Context, s *specs.Spec) error {
		if limit <= 0 {
			return invalid("pids limit %d: must be positive", limit)
		}
		r := ensureResources(s)
		r.Pids = &specs.LinuxPids{Limit: &limit}
		return nil
	}
}

// WithNoNewPrivileges stops the process and its children from gaining
// privileges (setuid binaries, file capabilities).
func WithNoNewPrivileges(_ context.Context, s *specs.Spec) error {
	ensureProcess(s).NoNewPrivileges = true
	return nil
}

// WithAnnotations adds annotations, replacing those with the same keys.
func WithAnnotations(annotations map[string]string) SpecOpts {
	return func(_ context.Context, s *specs.Spec) error {
		if _, ok := annotations[""]; ok {
			return invalid("annotation key: must not be empty")
		}
		if s.Annotations == nil {
			s.Annotations = make(map[string]string, len(annotations))
		}
		maps.Copy(s.Annotations, annotations)
		return nil
	}
}

// checkNamespaceType fails for a namespace type the runtime spec does not
// name.
func checkNamespaceType(t specs.LinuxNamespaceType) error {
	switch t {
	case specs.PIDNamespace, specs.NetworkNamespace, specs.MountNamespace, specs.IPCNamespace,
		specs.UTSNamespace, specs.UserNamespace, specs.CgroupNamespace, specs.TimeNamespace:
		return nil
	}
	return invalid("namespace type %q: unknown", t)
}

// setEnv replaces the entry of env with kv's key, or appends kv.
func setEnv(env []string, kv string) []string {
	key, _, _ := strings.Cut(kv, "=")
	for i, e := range env {
		if k, _, _ := strings.Cut(e, "="); k == key {
			env[i] = kv
			return env
		}
	}
	return append(env, kv)
}

// setMount replaces the mount at m's destination, or appends m.
func setMount(mounts []specs.Mount, m specs.Mount) []specs.Mount {
	if i := mountIndex(mounts, m.Destination); i >= 0 {
		mounts[i] = m
		return mounts
	}
	return append(mounts, m)
}

func hasMount(mounts []specs.Mount, dst string) bool { return mountIndex(mounts, dst) >= 0 }

func mountIndex(mounts []specs.Mount, dst string) int {
	dst = path.Clean(dst)
	return slices.IndexFunc(mounts, func(m specs.Mount) bool { return path.Clean(m.Destination) == dst })
}

func ensureProcess(s *specs.Spec) *specs.Process {
	if s.Process == nil {
		s.Process = &specs.Process{}
	}
	return s.Process
}

func ensureRoot(s *specs.Spec) *specs.Root {
	if s.Root == nil {
		s.Root = &specs.Root{}
	}
	return s.Root
}

func ensureLinux(s *specs.Spec) *specs.Linux {
	if s.Linux == nil {
		s.Linux = &specs.Linux{}
	}
	return s.Linux
}

func ensureResources(s *specs.Spec) *specs.LinuxResources {
	l := ensureLinux(s)
	if l.Resources == nil {
		l.Resources = &specs.LinuxResources{}
	}
	return l.Resources
}
