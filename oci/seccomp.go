package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/errdefs"
)

// seccompProfileMax bounds a seccomp profile file, in bytes: it is
// decoded whole, and the largest well-known profiles are under 100 KiB.
const seccompProfileMax = 1 << 20

// WithDefaultSeccomp filters the process's syscalls through berth's
// default profile (DefaultSeccomp), fitted to the bounding capability set
// the spec has when the option runs: apply it after the options that
// change capabilities.
func WithDefaultSeccomp(_ context.Context, s *specs.Spec) error {
	var caps []string
	if p := s.Process; p != nil && p.Capabilities != nil {
		caps = p.Capabilities.Bounding
	}
	ensureLinux(s).Seccomp = DefaultSeccomp(caps)
	return nil
}

// WithSeccompUnconfined removes any seccomp filter.
func WithSeccompUnconfined(_ context.Context, s *specs.Spec) error {
	ensureLinux(s).Seccomp = nil
	return nil
}

// WithSeccompProfileFile filters the process's syscalls through the
// profile in the file at path, an absolute path on the host. The file is
// either an OCI runtime spec seccomp section or a profile in the format
// Docker and the kubelet's localhost profiles use (with archMap, and
// includes and excludes by capability, architecture and kernel), which is
// fitted to the spec's bounding capability set when the option runs. It
// may be at most 1 MiB.
func WithSeccompProfileFile(path string) SpecOpts {
	return func(_ context.Context, s *specs.Spec) error {
		b, err := readSeccompProfile(path)
		if err != nil {
			return err
		}
		var caps []string
		if p := s.Process; p != nil && p.Capabilities != nil {
			caps = p.Capabilities.Bounding
		}
		sc, err := ParseSeccompProfile(b, caps)
		if err != nil {
			return fmt.Errorf("seccomp profile %s: %w", path, err)
		}
		ensureLinux(s).Seccomp = sc
		return nil
	}
}

func readSeccompProfile(path string) ([]byte, error) {
	if !filepath.IsAbs(path) {
		return nil, invalid("seccomp profile %q: must be an absolute path", path)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("seccomp profile %s: no such file: %w", path, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, invalid("seccomp profile %s: not a regular file (%v)", path, st.Mode().Type())
	}
	b, err := io.ReadAll(io.LimitReader(f, seccompProfileMax+1))
	if err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	if len(b) > seccompProfileMax {
		return nil, invalid("seccomp profile %s: larger than %d bytes", path, seccompProfileMax)
	}
	return b, nil
}

// seccompProfile is a profile file: the OCI section's fields, and those
// of the Docker format beside them.
type seccompProfile struct {
	DefaultAction    specs.LinuxSeccompAction `json:"defaultAction"`
	DefaultErrnoRet  *uint                    `json:"defaultErrnoRet,omitempty"`
	Architectures    []specs.Arch             `json:"architectures,omitempty"`
	ArchMap          []seccompArchMap         `json:"archMap,omitempty"`
	Flags            []specs.LinuxSeccompFlag `json:"flags,omitempty"`
	ListenerPath     string                   `json:"listenerPath,omitempty"`
	ListenerMetadata string                   `json:"listenerMetadata,omitempty"`
	Syscalls         []seccompSyscall         `json:"syscalls,omitempty"`
}

type seccompArchMap struct {
	Architecture     specs.Arch   `json:"architecture"`
	SubArchitectures []specs.Arch `json:"subArchitectures"`
}

type seccompSyscall struct {
	Name     string                   `json:"name,omitempty"` // an old Docker form of Names
	Names    []string                 `json:"names,omitempty"`
	Action   specs.LinuxSeccompAction `json:"action"`
	ErrnoRet *uint                    `json:"errnoRet,omitempty"`
	Args     []specs.LinuxSeccompArg  `json:"args,omitempty"`
	Includes *seccompFilter           `json:"includes,omitempty"`
	Excludes *seccompFilter           `json:"excludes,omitempty"`
}

type seccompFilter struct {
	Caps      []string `json:"caps,omitempty"`
	Arches    []string `json:"arches,omitempty"`
	MinKernel string   `json:"minKernel,omitempty"`
}

var seccompActions = []specs.LinuxSeccompAction{
	specs.ActKill, specs.ActKillProcess, specs.ActKillThread, specs.ActTrap, specs.ActErrno,
	specs.ActTrace, specs.ActAllow, specs.ActLog, specs.ActNotify,
}

var seccompOps = []specs.LinuxSeccompOperator{
	specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual, specs.OpEqualTo, specs.OpGreaterEqual,
	specs.OpGreaterThan, specs.OpMaskedEqual,
}

// ParseSeccompProfile decodes a seccomp profile (see
// WithSeccompProfileFile) into the spec's form, for a container whose
// bounding capability set is caps. Its errors name what is wrong and wrap
// errdefs.ErrInvalidArgument.
func ParseSeccompProfile(b []byte, caps []string) (*specs.LinuxSeccomp, error) {
	var p seccompProfile
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&p); err != nil {
		return nil, invalid("not a seccomp profile in JSON: %v", err)
	}
	if dec.More() {
		return nil, invalid("not a seccomp profile: data after the JSON object")
	}
	if p.DefaultAction == "" {
		return nil, invalid("defaultAction is missing")
	}
	if !slices.Contains(seccompActions, p.DefaultAction) {
		return nil, invalid("defaultAction %q: unknown", p.DefaultAction)
	}
	if p.ListenerPath != "" || p.DefaultAction == specs.ActNotify {
		return nil, invalid("listenerPath and SCMP_ACT_NOTIFY: a seccomp agent is not supported")
	}
	out := &specs.LinuxSeccomp{
		DefaultAction:   p.DefaultAction,
		DefaultErrnoRet: p.DefaultErrnoRet,
		Architectures:   p.Architectures,
		Flags:           p.Flags,
	}
	if len(p.ArchMap) > 0 && len(p.Architectures) > 0 {
		return nil, invalid("architectures and archMap: give one of them")
	}
	native := seccompArchitectures(runtime.GOARCH)
	for _, m := range p.ArchMap {
		if len(native) > 0 && m.Architecture == native[0] {
			out.Architectures = append([]specs.Arch{m.Architecture}, m.SubArchitectures...)
		}
	}
	goarch := runtime.GOARCH
	kernel := kernelVersion()
	for i, sc := range p.Syscalls {
		names := sc.Names
		if sc.Name != "" {
			if len(names) > 0 {
				return nil, invalid("syscalls[%d]: name and names: give one of them", i)
			}
			names = []string{sc.Name}
		}
		if len(names) == 0 || slices.Contains(names, "") {
			return nil, invalid("syscalls[%d]: names is empty or holds an empty name", i)
		}
		if !slices.Contains(seccompActions, sc.Action) {
			return nil, invalid("syscalls[%d] (%s): action %q: unknown", i, names[0], sc.Action)
		}
		if sc.Action == specs.ActNotify {
			return nil, invalid("syscalls[%d] (%s): SCMP_ACT_NOTIFY: a seccomp agent is not supported", i, names[0])
		}
		for j, a := range sc.Args {
			if !slices.Contains(seccompOps, a.Op) {
				return nil, invalid("syscalls[%d] (%s): args[%d]: op %q: unknown", i, names[0], j, a.Op)
			}
			if a.Index > 5 {
				return nil, invalid("syscalls[%d] (%s): args[%d]: index %d: a syscall has 6 arguments", i, names[0], j, a.Index)
			}
		}
		if !sc.Includes.matches(caps, goarch, kernel, true) || sc.Excludes.matches(caps, goarch, kernel, false) {
			continue
		}
		out.Syscalls = append(out.Syscalls, specs.LinuxSyscall{
			Names: slices.Clone(names), Action: sc.Action, ErrnoRet: sc.ErrnoRet, Args: sc.Args,
		})
	}
	return out, nil
}

// matches reports whether f selects a container with caps on goarch and
// the kernel release kernel: for includes every condition given must hold
// (an absent filter holds); for excludes any one given suffices (an absent
// filter does not).
func (f *seccompFilter) matches(caps []string, goarch string, kernel [2]int, includes bool) bool {
	if f == nil {
		return includes
	}
	capOK := slices.ContainsFunc(f.Caps, func(c string) bool { return slices.Contains(caps, c) })
	archOK := slices.ContainsFunc(f.Arches, func(a string) bool { return a == goarch || a == dockerArch(goarch) })
	kernelOK := false
	if f.MinKernel != "" {
		var maj, min int
		if _, err := fmt.Sscanf(f.MinKernel, "%d.%d", &maj, &min); err == nil {
			kernelOK = kernel[0] > maj || (kernel[0] == maj && kernel[1] >= min)
		}
	}
	if includes {
		return (len(f.Caps) == 0 || capOK) && (len(f.Arches) == 0 || archOK) && (f.MinKernel == "" || kernelOK)
	}
	return (len(f.Caps) > 0 && capOK) || (len(f.Arches) > 0 && archOK) || (f.MinKernel != "" && kernelOK)
}

// dockerArch is the name Docker's profiles use for a Go architecture.
func dockerArch(goarch string) string {
	switch goarch {
	case "amd64":
		return "x86_64"
	case "386":
		return "x86"
	case "arm64":
		return "aarch64"
	}
	return goarch
}

// kernelVersion is the running kernel's major and minor release.
func kernelVersion() [2]int {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return [2]int{}
	}
	var v [2]int
	_, _ = fmt.Sscanf(strings.TrimRight(string(u.Release[:]), "\x00"), "%d.%d", &v[0], &v[1])
	return v
}
