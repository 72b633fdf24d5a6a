package cri

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/errdefs"
)

// A pod's folder (Config.StateDir/sandboxes/<id>) holds the files its
// containers share: hostname, hosts, resolv.conf, and shm, a tmpfs mount
// for /dev/shm unless the pod uses the host's IPC namespace.

// hostsFile is the /etc/hosts of a pod with its own network.
const hostsFile = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"

// dnsMax bounds the DNS entries written to resolv.conf (the CRI request is
// input; the kubelet sends a handful).
const dnsMax = 64

// writePodFiles makes the pod's folder with its files, and mounts its shm
// unless hostIPC.
func writePodFiles(dir string, cfg *runtimeapi.PodSandboxConfig) error {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return err
	}
	opts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	hostNet := opts.GetNetwork() == runtimeapi.NamespaceMode_NODE
	hostname := cfg.GetHostname()
	if hostname == "" || hostNet {
		h, err := os.Hostname()
		if err != nil {
			return err
		}
		if hostname == "" {
			hostname = h
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "hostname"), []byte(hostname+"\n"), 0o644); err != nil {
		return err
	}
	hosts := []byte(hostsFile)
	if hostNet {
		var err error
		if hosts, err = os.ReadFile("/etc/hosts"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "hosts"), hosts, 0o644); err != nil {
		return err
	}
	resolv, err := resolvConf(cfg.GetDnsConfig())
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), resolv, 0o644); err != nil {
		return err
	}
	if opts.GetIpc() == runtimeapi.NamespaceMode_NODE {
		return nil
	}
	shm := filepath.Join(dir, "shm")
	if err := os.MkdirAll(shm, 0o700); err != nil {
		return err
	}
	if err := unix.Mount("shm", shm, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, fmt.Sprintf("mode=1777,size=%d", shmSize)); err != nil {
		return fmt.Errorf("mount the pod's shm: %w", err)
	}
	return nil
}

// removePodFiles unmounts the pod's shm and removes its folder; a folder
// already gone is no error.
func removePodFiles(dir string) error {
	shm := filepath.Join(dir, "shm")
	if err := unix.Unmount(shm, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount the pod's shm: %w", err)
	}
	return os.RemoveAll(dir)
}

// resolvConf returns the pod's resolv.conf: from the request's DNS config,
// else the host's.
func resolvConf(dns *runtimeapi.DNSConfig) ([]byte, error) {
	if dns == nil || len(dns.GetServers())+len(dns.GetSearches())+len(dns.GetOptions()) == 0 {
		data, err := os.ReadFile("/etc/resolv.conf")
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return data, err
	}
	if len(dns.GetServers()) > dnsMax || len(dns.GetSearches()) > dnsMax || len(dns.GetOptions()) > dnsMax {
		return nil, fmt.Errorf("dns config: more than %d servers, searches or options: %w", dnsMax, errdefs.ErrInvalidArgument)
	}
	var b strings.Builder
	for _, list := range [][]string{dns.GetServers(), dns.GetSearches(), dns.GetOptions()} {
		for _, v := range list {
			if strings.ContainsAny(v, "\n\r \t") || v == "" {
				return nil, fmt.Errorf("dns config: entry %q: empty or has white space: %w", v, errdefs.ErrInvalidArgument)
			}
		}
	}
	for _, s := range dns.GetServers() {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(dns.GetSearches()) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(dns.GetSearches(), " "))
	}
	if len(dns.GetOptions()) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(dns.GetOptions(), " "))
	}
	return []byte(b.String()), nil
}

// mountPropagation returns the optional fields (shared:N, master:N) of the
// mount that holds path p.
func mountPropagation(p string) (string, error) {
	m, err := mountOf(p)
	if err != nil {
		return "", err
	}
	return m.Optional, nil
}

// mountOf returns the mount that holds path p: the deepest one above it.
func mountOf(p string) (*mountinfo.Info, error) {
	mounts, err := mountinfo.GetMounts(mountinfo.ParentsFilter(p))
	if err != nil {
		return nil, err
	}
	var best *mountinfo.Info
	for _, m := range mounts {
		if best == nil || len(m.Mountpoint) > len(best.Mountpoint) {
			best = m
		}
	}
	if best == nil {
		return nil, fmt.Errorf("no mount holds %s", p)
	}
	return best, nil
}
