package cri

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/oci"
)

// Annotations berth writes into the specs it makes, in the names the
// kubelet's ecosystem (runc hooks, NRI plugins, monitoring) reads.
const (
	annotationContainerType = "io.kubernetes.cri.container-type"
	annotationSandboxID     = "io.kubernetes.cri.sandbox-id"
	annotationSandboxName   = "io.kubernetes.cri.sandbox-name"
	annotationSandboxNS     = "io.kubernetes.cri.sandbox-namespace"
	annotationContainerName = "io.kubernetes.cri.container-name"
	annotationImageName     = "io.kubernetes.cri.image-name"
)

// shmSize is the size of a pod's /dev/shm tmpfs, as Docker and
// containerd make it.
const shmSize = 64 << 20

// withCgroupParent places the container's cgroup under parent (a
// cgroupfs path), as <parent>/<id>; an empty parent keeps berth's default.
func withCgroupParent(parent, id string) oci.SpecOpts {
	return func(_ context.Context, s *specs.Spec) error {
		if parent == "" {
			return nil
		}
		if !path.IsAbs(parent) || strings.Contains(parent, "..") {
			return fmt.Errorf("cgroup parent %q: must be an absolute cgroupfs path without ..: %w", parent, errdefs.ErrInvalidArgument)
		}
		s.Linux.CgroupsPath = path.Join(parent, id)
		return nil
	}
}

// withSysctls sets the pod's sysctls.
func withSysctls(sysctls map[string]string) oci.SpecOpts {
	return func(_ context.Context, s *specs.Spec) error {
		if len(sysctls) == 0 {
			return nil
		}
		if s.Linux.Sysctl == nil {
			s.Linux.Sysctl = map[string]string{}
		}
		for k, v := range sysctls {
			s.Linux.Sysctl[k] = v
		}
		return nil
	}
}

// withPodFiles bind-mounts the pod's hostname, hosts and resolv.conf files
// and its /dev/shm into a container, read-only when ro.
func withPodFiles(dir string, hostIPC, ro bool) oci.SpecOpts {
	return func(ctx context.Context, s *specs.Spec) error {
		opt := "rw"
		if ro {
			opt = "ro"
		}
		var ms []specs.Mount
		for _, f := range []string{"hostname", "hosts", "resolv.conf"} {
			if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
				ms = append(ms, specs.Mount{Destination: "/etc/" + f, Type: "bind", Source: filepath.Join(dir, f), Options: []string{"rbind", "rprivate", opt}})
			}
		}
		shm := filepath.Join(dir, "shm")
		if hostIPC {
			shm = "/dev/shm"
		}
		ms = append(ms, specs.Mount{Destination: "/dev/shm", Type: "bind", Source: shm, Options: []string{"rbind", "rprivate", "rw"}})
		return oci.WithMounts(ms)(ctx, s)
	}
}

// withProcessArgs sets the container's command as the CRI merges it with
// the image's: the request's command replaces the entrypoint and then its
// args replace the image's cmd; args alone replace only the cmd.
func withProcessArgs(cfg *runtimeapi.ContainerConfig, entrypoint, cmd []string) oci.SpecOpts {
	return func(ctx context.Context, s *specs.Spec) error {
		var args []string
		switch {
		case len(cfg.GetCommand()) > 0:
			args = append(slices.Clone(cfg.GetCommand()), cfg.GetArgs()...)
		case len(cfg.GetArgs()) > 0:
			args = append(slices.Clone(entrypoint), cfg.GetArgs()...)
		default:
			args = append(slices.Clone(entrypoint), cmd...)
		}
		if len(args) == 0 {
			return fmt.Errorf("container has no command: neither the request nor the image gives one: %w", errdefs.ErrInvalidArgument)
		}
		s.Process.Args = args
		return nil
	}
}

// withCRIMounts adds the request's mounts: bind mounts with their
// propagation and read-only flag. A source that does not exist is made as
// a folder, as the kubelet expects of hostPath mounts. Image mounts are
// withImageMounts' (their host_path, which should be unset, is ignored).
func withCRIMounts(mounts []*runtimeapi.Mount) oci.SpecOpts {
	return func(ctx context.Context, s *specs.Spec) error {
		var ms []specs.Mount
		for _, m := range mounts {
			if m.GetImage() != nil {
				continue
			}
			src, dst := m.GetHostPath(), m.GetContainerPath()
			if !filepath.IsAbs(src) || !path.IsAbs(dst) {
				return fmt.Errorf("mount %q on %q: both paths must be absolute: %w", src, dst, errdefs.ErrInvalidArgument)
			}
			if _, err := os.Stat(src); err != nil {
				if !os.IsNotExist(err) {
					return fmt.Errorf("mount source %s: %w", src, err)
				}
				if err := os.MkdirAll(src, 0o755); err != nil {
					return fmt.Errorf("mount source %s: %w", src, err)
				}
			}
			if resolved, err := filepath.EvalSymlinks(src); err == nil {
				src = resolved
			}
			opts := []string{"rbind"}
			switch m.GetPropagation() {
			case runtimeapi.MountPropagation_PROPAGATION_PRIVATE:
				opts = append(opts, "rprivate")
			case runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
				opts = append(opts, "rslave")
				if err := ensureMountShared(src, false); err != nil {
					return err
				}
				setRootPropagation(s, "rslave")
			case runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
				opts = append(opts, "rshared")
				if err := ensureMountShared(src, true); err != nil {
					return err
				}
				setRootPropagation(s, "rshared")
			}
			if m.GetReadonly() {
				opts = append(opts, "ro")
			} else {
				opts = append(opts, "rw")
			}
			ms = append(ms, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: opts})
		}
		return oci.WithMounts(ms)(ctx, s)
	}
}

// setRootPropagation makes the container's root mount propagation at
// least as open as p ("rshared" above "rslave"), which a mount of that
// propagation inside it needs.
func setRootPropagation(s *specs.Spec, p string) {
	if s.Linux.RootfsPropagation == "rshared" {
		return
	}
	s.Linux.RootfsPropagation = p
}

// ensureMountShared checks that the mount holding path propagates as the
// mount asks: shared for bidirectional, shared or slave for
// host-to-container.
func ensureMountShared(p string, bidirectional bool) error {
	opts, err := mountPropagation(p)
	if err != nil {
		return err
	}
	if strings.Contains(opts, "shared:") {
		return nil
	}
	if !bidirectional && strings.Contains(opts, "master:") {
		return nil
	}
	return fmt.Errorf("mount source %s is not on a shared mount, which its propagation needs: %w", p, errdefs.ErrFailedPrecondition)
}

// withDevices adds the request's devices, with cgroup access as their
// permissions say.
func withDevices(devs []*runtimeapi.Device) oci.SpecOpts {
	return func(_ context.Context, s *specs.Spec) error {
		for _, d := range devs {
			var st unix.Stat_t
			if err := unix.Stat(d.GetHostPath(), &st); err != nil {
				return fmt.Errorf("device %s: %w", d.GetHostPath(), err)
			}
			var typ string
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFCHR:
				typ = "c"
			case unix.S_IFBLK:
				typ = "b"
			default:
				return fmt.Errorf("device %s: not a character or block device: %w", d.GetHostPath(), errdefs.ErrInvalidArgument)
			}
			major, minor := int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
			mode := os.FileMode(st.Mode & 0o777)
			uid, gid := uint32(0), uint32(0)
			dst := d.GetContainerPath()
			if !path.IsAbs(dst) {
				return fmt.Errorf("device %s: container path %q must be absolute: %w", d.GetHostPath(), dst, errdefs.ErrInvalidArgument)
			}
			s.Linux.Devices = append(s.Linux.Devices, specs.LinuxDevice{Path: dst, Type: typ, Major: major, Minor: minor, FileMode: &mode, UID: &uid, GID: &gid})
			perms := d.GetPermissions()
			if perms == "" {
				perms = "rwm"
			}
			s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: typ, Major: &major, Minor: &minor, Access: perms})
		}
		return nil
	}
}

// withResources sets CPU and memory limits (the OOM score adjustment is
// withOOMScoreAdj's).
func withResources(r *runtimeapi.LinuxContainerResources) oci.SpecOpts {
	return func(_ context.Context, s *specs.Spec) error {
		if r == nil {
			return nil
		}
		res := toSpecResources(r)
		if s.Linux.Resources == nil {
			s.Linux.Resources = &specs.LinuxResources{}
		}
		s.Linux.Resources.CPU, s.Linux.Resources.Memory = res.CPU, res.Memory
		s.Linux.Resources.HugepageLimits = res.HugepageLimits
		s.Linux.Resources.Unified = res.Unified
		return nil
	}
}

// toSpecResources converts the CRI's resources to the runtime spec's.
func toSpecResources(r *runtimeapi.LinuxContainerResources) *specs.LinuxResources {
	out := &specs.LinuxResources{}
	cpu := &specs.LinuxCPU{Cpus: r.GetCpusetCpus(), Mems: r.GetCpusetMems()}
	if v := r.GetCpuShares(); v != 0 {
		shares := uint64(v)
		cpu.Shares = &shares
	}
	if v := r.GetCpuQuota(); v != 0 {
		cpu.Quota = &v
	}
	if v := r.GetCpuPeriod(); v != 0 {
		period := uint64(v)
		cpu.Period = &period
	}
	out.CPU = cpu
	if v := r.GetMemoryLimitInBytes(); v != 0 {
		out.Memory = &specs.LinuxMemory{Limit: &v}
		if sw := r.GetMemorySwapLimitInBytes(); sw != 0 {
			out.Memory.Swap = &sw
		}
	}
	for _, h := range r.GetHugepageLimits() {
		out.HugepageLimits = append(out.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: h.GetPageSize(), Limit: h.GetLimit()})
	}
	if len(r.GetUnified()) > 0 {
		out.Unified = r.GetUnified()
	}
	return out
}
