package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/oci"
)

// seccompProfileMax bounds a localhost seccomp profile read from disk, in
// bytes.
const seccompProfileMax = 1 << 20

// defaultDenied are the syscalls berth's runtime/default profile refuses
// (EPERM), as Docker's default profile does, unless the container holds
// the capability beside them, which the kernel checks for them anyway.
// The profile allows the rest: it is a denylist, narrower than Docker's
// allowlist (part 2 of the CRI work ships a full one).
var defaultDenied = []struct {
	cap      string
	syscalls []string
}{
	{"", []string{"add_key", "keyctl", "request_key", "kexec_file_load", "kexec_load", "open_by_handle_at",
		"userfaultfd", "uselib", "ustat", "sysfs", "_sysctl", "vm86", "vm86old", "create_module",
		"get_kernel_syms", "query_module", "nfsservctl", "lookup_dcookie", "perf_event_open"}},
	{"CAP_SYS_ADMIN", []string{"mount", "umount", "umount2", "unshare", "setns", "pivot_root", "swapon", "swapoff",
		"quotactl", "name_to_handle_at", "fanotify_init", "bpf", "clone3", "fsopen", "fsmount", "fsconfig", "fspick",
		"move_mount", "open_tree", "mount_setattr"}},
	{"CAP_SYS_MODULE", []string{"init_module", "finit_module", "delete_module"}},
	{"CAP_SYS_BOOT", []string{"reboot"}},
	{"CAP_SYS_TIME", []string{"settimeofday", "stime", "clock_settime", "clock_adjtime", "adjtimex"}},
	{"CAP_SYS_PTRACE", []string{"ptrace", "process_vm_readv", "process_vm_writev", "kcmp"}},
	{"CAP_SYS_PACCT", []string{"acct"}},
	{"CAP_SYS_RAWIO", []string{"iopl", "ioperm"}},
	{"CAP_SYS_NICE", []string{"get_mempolicy", "set_mempolicy", "mbind", "move_pages"}},
}

// defaultSeccomp returns berth's runtime/default profile for a process
// with the capabilities caps.
func defaultSeccomp(caps []string) *specs.LinuxSeccomp {
	profile := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
	}
	errno := uint(1) // EPERM
	for _, d := range defaultDenied {
		if d.cap != "" && slices.Contains(caps, d.cap) {
			continue
		}
		profile.Syscalls = append(profile.Syscalls, specs.LinuxSyscall{Names: d.syscalls, Action: specs.ActErrno, ErrnoRet: &errno})
	}
	return profile
}

// withSeccomp applies the container's seccomp profile: unconfined (the
// CRI's default when none is given), runtime/default, or a localhost
// profile file in the OCI format. A privileged container runs without one.
func withSeccomp(sc *runtimeapi.LinuxContainerSecurityContext) oci.SpecOpts {
	return func(_ context.Context, s *specs.Spec) error {
		if sc.GetPrivileged() {
			s.Linux.Seccomp = nil
			return nil
		}
		kind, ref := seccompProfile(sc)
		switch kind {
		case runtimeapi.SecurityProfile_Unconfined:
			s.Linux.Seccomp = nil
		case runtimeapi.SecurityProfile_RuntimeDefault:
			s.Linux.Seccomp = defaultSeccomp(s.Process.Capabilities.Bounding)
		case runtimeapi.SecurityProfile_Localhost:
			p, err := localhostSeccomp(ref)
			if err != nil {
				return err
			}
			s.Linux.Seccomp = p
		}
		return nil
	}
}

// seccompProfile returns the profile the security context asks for, from
// its seccomp field or the older seccomp_profile_path.
func seccompProfile(sc *runtimeapi.LinuxContainerSecurityContext) (runtimeapi.SecurityProfile_ProfileType, string) {
	if p := sc.GetSeccomp(); p != nil {
		return p.GetProfileType(), p.GetLocalhostRef()
	}
	switch path := sc.GetSeccompProfilePath(); {
	case path == "runtime/default" || path == "docker/default":
		return runtimeapi.SecurityProfile_RuntimeDefault, ""
	case len(path) > len("localhost/") && path[:len("localhost/")] == "localhost/":
		return runtimeapi.SecurityProfile_Localhost, path[len("localhost/"):]
	}
	return runtimeapi.SecurityProfile_Unconfined, ""
}

// localhostSeccomp reads a seccomp profile in the OCI runtime spec's
// format from an absolute path on the host.
func localhostSeccomp(path string) (*specs.LinuxSeccomp, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("seccomp profile %q: not an absolute path: %w", path, errdefs.ErrInvalidArgument)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	defer f.Close()
	dec := json.NewDecoder(&limitedReader{r: f, n: seccompProfileMax})
	var p specs.LinuxSeccomp
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("seccomp profile %s: %v: %w", path, err, errdefs.ErrInvalidArgument)
	}
	return &p, nil
}

// limitedReader fails past n bytes, so that a huge file is refused rather
// than cut into something that may parse.
type limitedReader struct {
	r interface{ Read([]byte) (int, error) }
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, fmt.Errorf("larger than %d bytes", seccompProfileMax)
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}
