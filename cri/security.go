package cri

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/oci"
)

// The CRI's security contexts map onto package oci's options here, and
// only here: oci owns what a capability, a seccomp profile or a privileged
// container means (and never grants more than berthd holds); this file
// owns what the kubelet means by each field of LinuxContainerSecurityContext
// and LinuxSandboxSecurityContext.

// Seccomp and AppArmor profile names of the deprecated string fields
// (seccomp_profile_path, apparmor_profile), as the kubelet wrote them.
const (
	profileRuntimeDefault = "runtime/default"
	profileDockerDefault  = "docker/default"
	profileUnconfined     = "unconfined"
	profileLocalhost      = "localhost/"
)

// containerSecurityOpts returns the spec options of a container's security
// context, to run after every option that sets devices or mounts. The
// order among them matters: the user before the groups added to it,
// capabilities before the seccomp profile fitted to them, and privileged
// last among what it overrides.
func (s *Server) containerSecurityOpts(sc *runtimeapi.LinuxContainerSecurityContext, sb *sandbox) ([]oci.SpecOpts, error) {
	if sc.GetRunAsGroup() != nil && sc.GetRunAsUser() == nil && sc.GetRunAsUsername() == "" {
		return nil, fmt.Errorf("run_as_group without run_as_user or run_as_username: %w", errdefs.ErrInvalidArgument)
	}
	opts, err := userOpts(sc.GetRunAsUser(), sc.GetRunAsUsername(), sc.GetRunAsGroup(), sc.GetSupplementalGroups(), sc.GetSupplementalGroupsPolicy())
	if err != nil {
		return nil, err
	}
	if sc.GetReadonlyRootfs() {
		opts = append(opts, oci.WithRootFSReadonly)
	}
	if sc.GetNoNewPrivs() {
		opts = append(opts, oci.WithNoNewPrivileges)
	}
	label, err := selinuxOpt(sc.GetSelinuxOptions())
	if err != nil {
		return nil, err
	}
	opts = append(opts, label)
	if sc.GetPrivileged() {
		// The kubelet marks a pod privileged when any of its containers
		// is; a privileged container in a pod that is not would escape
		// what the pod was admitted as.
		if !sb.config.GetLinux().GetSecurityContext().GetPrivileged() {
			return nil, fmt.Errorf("privileged container in pod sandbox %s, which is not privileged: %w", sb.rec.ID, errdefs.ErrInvalidArgument)
		}
		// Capabilities, masked paths, seccomp and AppArmor asked for
		// beside privileged do not apply: WithPrivileged lifts them all.
		return append(opts, oci.WithPrivileged, oci.WithHostDevices), nil
	}
	caps := sc.GetCapabilities()
	opts = append(opts, oci.WithCapabilities(caps.GetAddCapabilities(), caps.GetDropCapabilities()), s.withHeldCapabilities)
	// An absent list is the kubelet's Default proc mount: the default
	// paths. (The Unmasked proc mount sends an empty list, which protobuf
	// cannot tell from an absent one; it needs user namespaces anyway.)
	masked, readonly := sc.GetMaskedPaths(), sc.GetReadonlyPaths()
	if masked == nil {
		masked = oci.DefaultMaskedPaths()
	}
	if readonly == nil {
		readonly = oci.DefaultReadonlyPaths()
	}
	opts = append(opts, oci.WithMaskedPaths(masked), oci.WithReadonlyPaths(readonly))
	seccomp, err := seccompOpt(sc.GetSeccomp(), sc.GetSeccompProfilePath())
	if err != nil {
		return nil, err
	}
	apparmor, err := apparmorOpt(sc.GetApparmor(), sc.GetApparmorProfile())
	if err != nil {
		return nil, err
	}
	return append(opts, seccomp, apparmor), nil
}

// sandboxSecurityOpts returns the spec options of a pod's security context
// for its sandbox container. The sandbox (pause) needs no privilege of its
// own: it never gains any (no_new_privs), and it runs privileged only in a
// privileged pod, whose containers may then share its namespaces' power.
func sandboxSecurityOpts(sc *runtimeapi.LinuxSandboxSecurityContext) ([]oci.SpecOpts, error) {
	// A pod may give run_as_group alone: the sandbox image's user keeps
	// its uid.
	opts, err := userOpts(sc.GetRunAsUser(), "", sc.GetRunAsGroup(), sc.GetSupplementalGroups(), sc.GetSupplementalGroupsPolicy())
	if err != nil {
		return nil, err
	}
	opts = append(opts, oci.WithNoNewPrivileges)
	if sc.GetReadonlyRootfs() {
		opts = append(opts, oci.WithRootFSReadonly)
	}
	label, err := selinuxOpt(sc.GetSelinuxOptions())
	if err != nil {
		return nil, err
	}
	opts = append(opts, label)
	if sc.GetPrivileged() {
		return append(opts, oci.WithPrivileged), nil
	}
	seccomp, err := seccompOpt(sc.GetSeccomp(), sc.GetSeccompProfilePath())
	if err != nil {
		return nil, err
	}
	return append(opts, seccomp), nil
}

// userOpts sets the user the process runs as, as the kubelet means the
// fields: run_as_user (a uid) or run_as_username (a name in the image's
// /etc/passwd) replaces the image's user, with the primary group and the
// groups /etc/group lists the user in from the image; run_as_group
// replaces the primary group; supplemental groups are added, and under
// the Strict policy they are the only ones beside the primary group.
func userOpts(uid *runtimeapi.Int64Value, username string, gid *runtimeapi.Int64Value, groups []int64, policy runtimeapi.SupplementalGroupsPolicy) ([]oci.SpecOpts, error) {
	var opts []oci.SpecOpts
	switch {
	case uid != nil:
		u, err := idValue("run_as_user", uid.GetValue())
		if err != nil {
			return nil, err
		}
		opts = append(opts, oci.WithUser(strconv.FormatUint(uint64(u), 10)))
	case username != "":
		// oci.WithUser takes "user:group"; a name is only a name.
		if strings.ContainsAny(username, ":\x00\n") {
			return nil, fmt.Errorf("run_as_username %q: not a user name: %w", username, errdefs.ErrInvalidArgument)
		}
		opts = append(opts, oci.WithUser(username))
	}
	if gid != nil {
		g, err := idValue("run_as_group", gid.GetValue())
		if err != nil {
			return nil, err
		}
		opts = append(opts, oci.WithGID(g))
	}
	if policy == runtimeapi.SupplementalGroupsPolicy_Strict {
		opts = append(opts, func(_ context.Context, s *specs.Spec) error {
			s.Process.User.AdditionalGids = nil
			return nil
		})
	}
	extra := make([]uint32, 0, len(groups))
	for _, g := range groups {
		v, err := idValue("supplemental group", g)
		if err != nil {
			return nil, err
		}
		extra = append(extra, v)
	}
	if len(extra) > 0 {
		opts = append(opts, oci.WithAdditionalGIDs(extra...))
	}
	return opts, nil
}

// idValue checks that v is a uid or gid the kernel takes.
func idValue(what string, v int64) (uint32, error) {
	// 2^32-1 is the kernel's "no id" (-1 as uid_t), never a real one.
	if v < 0 || v >= math.MaxUint32 {
		return 0, fmt.Errorf("%s %d: out of range: %w", what, v, errdefs.ErrInvalidArgument)
	}
	return uint32(v), nil
}

// withHeldCapabilities leaves out of the process's capability sets those
// berthd does not hold itself (root lacks CAP_SYS_RESOURCE on some
// machines): runc cannot grant them and would fail the container, where
// the kubelet's intent — the most the node allows — is still met.
func (s *Server) withHeldCapabilities(_ context.Context, sp *specs.Spec) error {
	held, err := oci.CurrentCapabilities()
	if err != nil {
		return err
	}
	c := sp.Process.Capabilities
	if c == nil {
		return nil
	}
	var dropped []string
	for _, set := range []*[]string{&c.Bounding, &c.Effective, &c.Permitted} {
		*set = slices.DeleteFunc(*set, func(n string) bool {
			if slices.Contains(held, n) {
				return false
			}
			if !slices.Contains(dropped, n) {
				dropped = append(dropped, n)
			}
			return true
		})
	}
	if len(dropped) > 0 {
		s.log.Info("cri: capabilities berthd lacks left out of a container", "capabilities", dropped)
	}
	return nil
}

// seccompOpt returns the seccomp option of a security profile, or of the
// deprecated profile path when no profile is given. Neither given means
// unconfined, as the CRI defines it (the kubelet sends runtime/default
// when the pod asks for it). runtime/default is berth's shipped profile
// (oci.DefaultSeccomp), fitted to the capabilities set before it.
func seccompOpt(p *runtimeapi.SecurityProfile, path string) (oci.SpecOpts, error) {
	if p == nil {
		switch {
		case path == "" || path == profileUnconfined:
			return oci.WithSeccompUnconfined, nil
		case path == profileRuntimeDefault || path == profileDockerDefault:
			return oci.WithDefaultSeccomp, nil
		case strings.HasPrefix(path, profileLocalhost):
			return oci.WithSeccompProfileFile(strings.TrimPrefix(path, profileLocalhost)), nil
		}
		return nil, fmt.Errorf("seccomp profile path %q: want %s, %s or %s<path>: %w", path, profileRuntimeDefault, profileUnconfined, profileLocalhost, errdefs.ErrInvalidArgument)
	}
	switch p.GetProfileType() {
	case runtimeapi.SecurityProfile_RuntimeDefault:
		return oci.WithDefaultSeccomp, nil
	case runtimeapi.SecurityProfile_Unconfined:
		return oci.WithSeccompUnconfined, nil
	case runtimeapi.SecurityProfile_Localhost:
		return oci.WithSeccompProfileFile(p.GetLocalhostRef()), nil
	}
	return nil, fmt.Errorf("seccomp profile type %v: unknown: %w", p.GetProfileType(), errdefs.ErrInvalidArgument)
}

// apparmorOpt returns the AppArmor option of a security profile, or of the
// deprecated profile name when no profile is given. berth ships no
// AppArmor profile and sets none for runtime/default or unconfined: the
// host's policy applies (and where the host has no AppArmor, there is
// nothing to apply). A localhost profile is set by name; it must be loaded
// on the host, and fails where AppArmor is off (see oci.WithApparmorProfile).
func apparmorOpt(p *runtimeapi.SecurityProfile, name string) (oci.SpecOpts, error) {
	none := func(context.Context, *specs.Spec) error { return nil }
	if p == nil {
		switch {
		case name == "" || name == profileUnconfined || name == profileRuntimeDefault:
			return none, nil
		case strings.HasPrefix(name, profileLocalhost):
			return oci.WithApparmorProfile(strings.TrimPrefix(name, profileLocalhost)), nil
		}
		return nil, fmt.Errorf("apparmor profile %q: want %s, %s or %s<name>: %w", name, profileRuntimeDefault, profileUnconfined, profileLocalhost, errdefs.ErrInvalidArgument)
	}
	switch p.GetProfileType() {
	case runtimeapi.SecurityProfile_RuntimeDefault, runtimeapi.SecurityProfile_Unconfined:
		return none, nil
	case runtimeapi.SecurityProfile_Localhost:
		return oci.WithApparmorProfile(p.GetLocalhostRef()), nil
	}
	return nil, fmt.Errorf("apparmor profile type %v: unknown: %w", p.GetProfileType(), errdefs.ErrInvalidArgument)
}

// selinuxOpt passes the SELinux options through as the process label
// (user:role:type:level, with the container defaults for what is not
// given) and the matching file label for the container's mounts. Where
// SELinux is off, oci drops them.
func selinuxOpt(o *runtimeapi.SELinuxOption) (oci.SpecOpts, error) {
	if o.GetUser() == "" && o.GetRole() == "" && o.GetType() == "" && o.GetLevel() == "" {
		return func(context.Context, *specs.Spec) error { return nil }, nil
	}
	for _, f := range []string{o.GetUser(), o.GetRole(), o.GetType()} {
		if strings.Contains(f, ":") {
			return nil, fmt.Errorf("SELinux option %q: has a ':': %w", f, errdefs.ErrInvalidArgument)
		}
	}
	or := func(v, def string) string {
		if v == "" {
			return def
		}
		return v
	}
	level := or(o.GetLevel(), "s0")
	process := strings.Join([]string{or(o.GetUser(), "system_u"), or(o.GetRole(), "system_r"), or(o.GetType(), "container_t"), level}, ":")
	mount := strings.Join([]string{or(o.GetUser(), "system_u"), "object_r", "container_file_t", level}, ":")
	return oci.WithSELinuxLabel(process, mount), nil
}

// withOOMScoreAdj sets the container's oom_score_adj as the kubelet asks
// (0 when it does not), never below berthd's own: lowering a score below
// the caller's needs CAP_SYS_RESOURCE, which root lacks on some machines,
// and runc would fail the container. A raised score is logged.
func (s *Server) withOOMScoreAdj(id string, r *runtimeapi.LinuxContainerResources) oci.SpecOpts {
	adj := int(r.GetOomScoreAdj())
	return func(ctx context.Context, sp *specs.Spec) error {
		if err := oci.WithOOMScoreAdj(adj, true)(ctx, sp); err != nil {
			return err
		}
		if got := *sp.Process.OOMScoreAdj; got != adj {
			s.log.Info("cri: oom_score_adj raised to berthd's own", "container", id, "asked", adj, "set", got)
		}
		return nil
	}
}

// podNamespaceOpts joins a container to its pod's namespaces: network and
// IPC of the sandbox (or the host's under NODE), UTS of the sandbox (or
// the host's with the host's network), and PID as the container's options
// say (the kubelet copies the pod's there): POD (the zero value) joins
// the sandbox's, CONTAINER gets its own, NODE is the host's, and TARGET
// joins that of another running container of the pod.
func (s *Server) podNamespaceOpts(ctx context.Context, sb *sandbox, sandboxPid uint32, ctrNS *runtimeapi.NamespaceOption) ([]oci.SpecOpts, error) {
	podNS := sb.config.GetLinux().GetSecurityContext().GetNamespaceOptions()
	proc := func(pid uint32, ns string) string { return fmt.Sprintf("/proc/%d/ns/%s", pid, ns) }
	var opts []oci.SpecOpts
	switch {
	case podNS.GetNetwork() == runtimeapi.NamespaceMode_NODE:
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace), oci.WithHostNamespace(specs.UTSNamespace))
	case sb.rec.NetNS != "":
		opts = append(opts, oci.WithLinuxNamespace(specs.NetworkNamespace, sb.rec.NetNS), oci.WithLinuxNamespace(specs.UTSNamespace, proc(sandboxPid, "uts")))
	default:
		opts = append(opts, oci.WithLinuxNamespace(specs.NetworkNamespace, proc(sandboxPid, "net")), oci.WithLinuxNamespace(specs.UTSNamespace, proc(sandboxPid, "uts")))
	}
	if podNS.GetIpc() == runtimeapi.NamespaceMode_NODE {
		opts = append(opts, oci.WithHostNamespace(specs.IPCNamespace))
	} else {
		opts = append(opts, oci.WithLinuxNamespace(specs.IPCNamespace, proc(sandboxPid, "ipc")))
	}
	switch ctrNS.GetPid() {
	case runtimeapi.NamespaceMode_NODE:
		opts = append(opts, oci.WithHostNamespace(specs.PIDNamespace))
	case runtimeapi.NamespaceMode_POD:
		opts = append(opts, oci.WithLinuxNamespace(specs.PIDNamespace, proc(sandboxPid, "pid")))
	case runtimeapi.NamespaceMode_CONTAINER:
		opts = append(opts, oci.WithLinuxNamespace(specs.PIDNamespace, ""))
	case runtimeapi.NamespaceMode_TARGET:
		pid, err := s.targetPid(ctx, sb, ctrNS.GetTargetId())
		if err != nil {
			return nil, err
		}
		opts = append(opts, oci.WithLinuxNamespace(specs.PIDNamespace, proc(pid, "pid")))
	default:
		return nil, fmt.Errorf("pid namespace mode %v: unknown: %w", ctrNS.GetPid(), errdefs.ErrInvalidArgument)
	}
	return opts, nil
}

// targetPid returns the pid of the task of container id, which must be a
// running container of pod sb, for a container that joins its PID
// namespace (the kubelet's ephemeral debug containers).
func (s *Server) targetPid(ctx context.Context, sb *sandbox, id string) (uint32, error) {
	if id == "" {
		return 0, fmt.Errorf("pid namespace mode TARGET without a target_id: %w", errdefs.ErrInvalidArgument)
	}
	c, err := s.containerByID(id)
	if err != nil {
		return 0, fmt.Errorf("pid namespace target: %w", err)
	}
	if c.rec.SandboxID != sb.rec.ID {
		return 0, fmt.Errorf("pid namespace target %s: not a container of pod sandbox %s: %w", id, sb.rec.ID, errdefs.ErrInvalidArgument)
	}
	_, task, err := s.runningTask(ctx, c)
	if err != nil {
		return 0, fmt.Errorf("pid namespace target: %w", err)
	}
	return task.Pid(), nil
}
