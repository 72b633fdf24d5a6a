package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/oci"
)

// containerFlags are the flags of `containers create` and `run` that shape
// a container.
type containerFlags struct {
	rootfs      string
	env         []string
	envFile     string
	mounts      []string
	netHost     bool
	tty         bool
	cwd         string
	user        string
	hostname    string
	labels      []string
	readOnly    bool
	memoryLimit uint64
	cpus        float64
	runtime     string
}

func (f *containerFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.SetInterspersed(false) // flags after ID belong to the container's command
	fl.StringVar(&f.rootfs, "rootfs", "", "root filesystem folder of the container, instead of IMAGE")
	fl.StringArrayVar(&f.env, "env", nil, "environment variable KEY=VALUE (repeatable)")
	fl.StringVar(&f.envFile, "env-file", "", "file of KEY=VALUE lines to add to the environment")
	fl.StringArrayVar(&f.mounts, "mount", nil, "mount type=bind,src=HOST,dst=CONTAINER,options=rbind:ro (repeatable)")
	fl.BoolVar(&f.netHost, "net-host", false, "share the host's network namespace")
	fl.BoolVarP(&f.tty, "tty", "t", false, "allocate a terminal")
	fl.StringVar(&f.cwd, "cwd", "", "working directory in the container")
	fl.StringVarP(&f.user, "user", "u", "", "USER[:GROUP] to run as, names or numbers (names from the container's /etc/passwd and /etc/group)")
	fl.StringVar(&f.hostname, "hostname", "", "host name in the container")
	fl.StringArrayVar(&f.labels, "label", nil, "container label KEY=VALUE (repeatable)")
	fl.BoolVar(&f.readOnly, "read-only", false, "mount the root filesystem read-only")
	fl.Uint64Var(&f.memoryLimit, "memory-limit", 0, "memory limit in bytes")
	fl.Float64Var(&f.cpus, "cpus", 0, "CPU quota in CPUs (e.g. 0.5)")
	fl.StringVar(&f.runtime, "runtime", "", "OCI runtime: runc or the path of a binary with runc's command line (default: the daemon's)")
}

// check refuses flag values that are malformed, before anything is made.
func (f *containerFlags) check() error {
	return checkUser(f.user)
}

// checkUser refuses a malformed --user; whether its names exist is known
// only in the container's root filesystem.
func checkUser(user string) error {
	if user == "" {
		return nil
	}
	if _, err := oci.ResolveUser("", user); errdefs.IsInvalidArgument(err) {
		return usageError{fmt.Errorf("--user: %w", err)}
	}
	return nil
}

// containerOpts turns the flags and the command into container options:
// the rootfs of --rootfs, else the image's (imageOpts): its options img and
// the spec options imgSpec, which the flags' then change.
func (f *containerFlags) containerOpts(args []string, img []client.NewContainerOpts, imgSpec ...oci.SpecOpts) ([]client.NewContainerOpts, error) {
	specOpts := append([]oci.SpecOpts(nil), imgSpec...)
	if f.rootfs != "" {
		rootfs, err := filepath.Abs(f.rootfs)
		if err != nil {
			return nil, err
		}
		if st, err := os.Stat(rootfs); err != nil || !st.IsDir() {
			return nil, usageError{fmt.Errorf("--rootfs %s: not a folder", f.rootfs)}
		}
		specOpts = append(specOpts, oci.WithRootFSPath(rootfs))
	}
	if len(args) > 0 {
		specOpts = append(specOpts, oci.WithProcessArgs(args...))
	}
	env := append([]string(nil), f.env...)
	if f.envFile != "" {
		more, err := readEnvFile(f.envFile)
		if err != nil {
			return nil, err
		}
		env = append(more, env...)
	}
	if len(env) > 0 {
		specOpts = append(specOpts, oci.WithEnv(env))
	}
	for _, m := range f.mounts {
		mount, err := parseMount(m)
		if err != nil {
			return nil, err
		}
		specOpts = append(specOpts, oci.WithMounts([]specs.Mount{mount}))
	}
	if f.netHost {
		specOpts = append(specOpts, oci.WithHostNamespace(specs.NetworkNamespace))
	}
	if f.tty {
		specOpts = append(specOpts, oci.WithTTY)
	}
	if f.cwd != "" {
		specOpts = append(specOpts, oci.WithProcessCwd(f.cwd))
	}
	if f.user != "" {
		specOpts = append(specOpts, oci.WithUser(f.user))
	}
	if f.hostname != "" {
		specOpts = append(specOpts, oci.WithHostname(f.hostname))
	}
	if f.readOnly {
		specOpts = append(specOpts, oci.WithRootFSReadonly)
	}
	if f.memoryLimit > 0 {
		specOpts = append(specOpts, oci.WithMemoryLimit(f.memoryLimit))
	}
	if f.cpus > 0 {
		specOpts = append(specOpts, oci.WithCPUs(f.cpus))
	}
	labels, err := parseLabels(f.labels)
	if err != nil {
		return nil, err
	}
	opts := append(append([]client.NewContainerOpts(nil), img...), client.WithNewSpec(specOpts...))
	if len(labels) > 0 {
		opts = append(opts, client.WithContainerLabels(labels))
	}
	if f.runtime != "" {
		opts = append(opts, client.WithRuntime(f.runtime, nil))
	}
	return opts, nil
}

// parseMount parses type=bind,src=…,dst=…,options=a:b.
func parseMount(s string) (specs.Mount, error) {
	m := specs.Mount{Type: "bind"}
	for _, field := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(field, "=")
		if !ok {
			return m, usageError{fmt.Errorf("--mount %q: %q is not KEY=VALUE", s, field)}
		}
		switch k {
		case "type":
			m.Type = v
		case "src", "source":
			m.Source = v
		case "dst", "destination", "target":
			m.Destination = v
		case "options":
			m.Options = strings.Split(v, ":")
		default:
			return m, usageError{fmt.Errorf("--mount %q: unknown key %q (type, src, dst, options)", s, k)}
		}
	}
	if m.Destination == "" || !filepath.IsAbs(m.Destination) {
		return m, usageError{fmt.Errorf("--mount %q: dst must be an absolute path", s)}
	}
	if m.Type == "bind" {
		if m.Source == "" {
			return m, usageError{fmt.Errorf("--mount %q: a bind mount needs src", s)}
		}
		abs, err := filepath.Abs(m.Source)
		if err != nil {
			return m, err
		}
		m.Source = abs
		if len(m.Options) == 0 {
			m.Options = []string{"rbind"}
		}
	}
	return m, nil
}

func readEnvFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--env-file: %w", err)
	}
	defer f.Close()
	var env []string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !strings.Contains(line, "=") {
			return nil, fmt.Errorf("--env-file %s line %d: want KEY=VALUE", path, n)
		}
		env = append(env, line)
	}
	return env, sc.Err()
}
