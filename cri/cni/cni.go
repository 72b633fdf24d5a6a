package cni

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/berthrt/berth/cri/netns"
	"github.com/berthrt/berth/errdefs"
	gocni "github.com/containerd/go-cni"
)

// pluginTimeout bounds a Setup or Teardown whose context has no deadline.
const pluginTimeout = 2 * time.Minute

// Config says where the plugins and their network configs are.
type Config struct {
	BinDirs []string // plugin binaries, searched in order
	ConfDir string   // *.conf, *.conflist, *.json network configs
}

// Pod is what the plugins learn about the pod.
type Pod struct {
	Name, Namespace, UID string
	PortMappings         []PortMapping
	CgroupParent         string
}

// PortMapping forwards HostIP:HostPort on the host to ContainerPort in the
// pod. A HostPort of 0 asks for no forwarding (the CRI sends such entries).
type PortMapping struct {
	HostPort, ContainerPort int32
	Protocol                string // tcp (when empty), udp or sctp
	HostIP                  string // all host addresses when empty
}

// Result is the pod's addresses on its network, primary IPv4 first.
type Result struct {
	IP            string
	AdditionalIPs []string
}

// Network is the pod network of one conf dir.
type Network struct {
	cfg Config
	cni gocni.CNI

	mu      sync.Mutex // guards the two below; held while reloading
	stamp   string     // the conf dir's files at the last load
	loadErr error      // why the last load left no usable network
}

// New returns the network of cfg.ConfDir. A conf dir without a usable
// config is no error here: Status says so until one appears.
func New(cfg Config) (*Network, error) {
	if len(cfg.BinDirs) == 0 || cfg.ConfDir == "" {
		return nil, fmt.Errorf("cni config: bin dirs and conf dir are required: %w", errdefs.ErrInvalidArgument)
	}
	c, err := gocni.New(
		gocni.WithPluginDir(cfg.BinDirs),
		gocni.WithPluginConfDir(cfg.ConfDir),
		gocni.WithMinNetworkCount(2), // loopback and the pod network
	)
	if err != nil {
		return nil, fmt.Errorf("cni: %w", err)
	}
	n := &Network{cfg: cfg, cni: c}
	n.reload()
	return n, nil
}

// Status returns nil when a usable network config is loaded, else why not.
func (n *Network) Status() error {
	if err := n.reload(); err != nil {
		return err
	}
	if err := n.cni.Status(); err != nil {
		return fmt.Errorf("cni network: %w", err)
	}
	return nil
}

// Setup attaches the namespace at netnsPath to loopback and the pod
// network (CNI ADD).
func (n *Network) Setup(ctx context.Context, sandboxID, netnsPath string, pod Pod) (_ *Result, retErr error) {
	if sandboxID == "" || !filepath.IsAbs(netnsPath) {
		return nil, fmt.Errorf("cni setup: a sandbox id and an absolute netns path are required: %w", errdefs.ErrInvalidArgument)
	}
	opts, err := namespaceOpts(sandboxID, pod)
	if err != nil {
		return nil, err
	}
	if err := n.reload(); err != nil {
		return nil, err
	}
	ctx, cancel := bounded(ctx)
	defer cancel()
	defer func() {
		if retErr != nil {
			cctx, ccancel := bounded(context.WithoutCancel(ctx))
			defer ccancel()
			if err := n.cni.Remove(cctx, sandboxID, netnsPath, opts...); err != nil {
				retErr = errors.Join(retErr, fmt.Errorf("undo cni setup: %w", err))
			}
		}
	}()
	// Serially: loopback first, as the CRI expects, not both at once.
	res, err := n.cni.SetupSerially(ctx, sandboxID, netnsPath, opts...)
	if err != nil {
		return nil, fmt.Errorf("cni setup of sandbox %s: %w", sandboxID, err)
	}
	return podIPs(res)
}

// Teardown detaches the sandbox from the pod network (CNI DEL). It is
// idempotent and works when the namespace at netnsPath is gone or empty.
func (n *Network) Teardown(ctx context.Context, sandboxID, netnsPath string, pod Pod) error {
	if sandboxID == "" {
		return fmt.Errorf("cni teardown: a sandbox id is required: %w", errdefs.ErrInvalidArgument)
	}
	opts, err := namespaceOpts(sandboxID, pod)
	if err != nil {
		return err
	}
	if netnsPath != "" {
		closed, err := netns.Load(netnsPath).Closed()
		if err != nil {
			return fmt.Errorf("cni teardown of sandbox %s: %w", sandboxID, err)
		}
		if closed {
			// A path that holds no namespace any more would make the
			// plugins fail; without one they still release what they hold.
			netnsPath = ""
		}
	}
	ctx, cancel := bounded(ctx)
	defer cancel()
	if err := n.cni.Remove(ctx, sandboxID, netnsPath, opts...); err != nil {
		return fmt.Errorf("cni teardown of sandbox %s: %w", sandboxID, err)
	}
	return nil
}

// reload loads the conf dir again when its config files changed, and
// returns why the loaded config is unusable, if it is.
func (n *Network) reload() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	stamp, err := confStamp(n.cfg.ConfDir)
	if err != nil {
		n.stamp, n.loadErr = "", err
		return err
	}
	if stamp == n.stamp && n.stamp != "" {
		return n.loadErr
	}
	n.stamp = stamp
	n.loadErr = nil
	if err := n.cni.Load(gocni.WithLoNetwork, gocni.WithDefaultConf); err != nil {
		n.loadErr = fmt.Errorf("cni config in %s: %w", n.cfg.ConfDir, err)
		return n.loadErr
	}
	n.loadErr = n.checkPluginsLocked()
	return n.loadErr
}

// checkPluginsLocked names a plugin of the loaded config that no bin dir
// holds, so Status reports it rather than the first Setup.
func (n *Network) checkPluginsLocked() error {
	for _, network := range n.cni.GetConfig().Networks {
		for _, p := range network.Config.Plugins {
			if !n.havePlugin(p.Network.Type) {
				return fmt.Errorf("cni plugin %q of network %q not found in %s",
					p.Network.Type, network.Config.Name, strings.Join(n.cfg.BinDirs, ", "))
			}
		}
	}
	return nil
}

func (n *Network) havePlugin(name string) bool {
	if name == "" || strings.ContainsRune(name, '/') {
		return false
	}
	for _, dir := range n.cfg.BinDirs {
		if fi, err := os.Stat(filepath.Join(dir, name)); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return true
		}
	}
	return false
}

// confStamp fingerprints the config files of dir (what libcni would read).
func confStamp(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("cni conf dir: %w", err)
	}
	var b strings.Builder
	for _, e := range entries {
		switch filepath.Ext(e.Name()) {
		case ".conf", ".conflist", ".json":
		default:
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		fmt.Fprintf(&b, "%s %d %d\n", e.Name(), fi.Size(), fi.ModTime().UnixNano())
	}
	if b.Len() == 0 {
		return "", fmt.Errorf("no network config found in %s", dir)
	}
	return b.String(), nil
}

func namespaceOpts(sandboxID string, pod Pod) ([]gocni.NamespaceOpts, error) {
	labels := map[string]string{
		"K8S_POD_NAMESPACE":          pod.Namespace,
		"K8S_POD_NAME":               pod.Name,
		"K8S_POD_INFRA_CONTAINER_ID": sandboxID,
		"K8S_POD_UID":                pod.UID,
		"IgnoreUnknown":              "1", // plugins that know no K8S_* args must not fail
	}
	opts := []gocni.NamespaceOpts{gocni.WithLabels(labels)}
	var ports []gocni.PortMapping
	for _, pm := range pod.PortMappings {
		if pm.HostPort == 0 {
			continue
		}
		p, err := portMapping(pm)
		if err != nil {
			return nil, err
		}
		ports = append(ports, p)
	}
	if len(ports) > 0 {
		opts = append(opts, gocni.WithCapabilityPortMap(ports))
	}
	if pod.CgroupParent != "" {
		opts = append(opts, gocni.WithCapabilityCgroupPath(pod.CgroupParent))
	}
	return opts, nil
}

func portMapping(pm PortMapping) (gocni.PortMapping, error) {
	bad := func(what string) (gocni.PortMapping, error) {
		return gocni.PortMapping{}, fmt.Errorf("port mapping %d->%d/%s: %s: %w",
			pm.HostPort, pm.ContainerPort, pm.Protocol, what, errdefs.ErrInvalidArgument)
	}
	if pm.HostPort < 1 || pm.HostPort > 65535 || pm.ContainerPort < 1 || pm.ContainerPort > 65535 {
		return bad("ports must be 1 to 65535")
	}
	proto := strings.ToLower(pm.Protocol)
	switch proto {
	case "":
		proto = "tcp"
	case "tcp", "udp", "sctp":
	default:
		return bad("protocol must be tcp, udp or sctp")
	}
	if pm.HostIP != "" && net.ParseIP(pm.HostIP) == nil {
		return bad("host IP is not an IP address")
	}
	return gocni.PortMapping{
		HostPort:      pm.HostPort,
		ContainerPort: pm.ContainerPort,
		Protocol:      proto,
		HostIP:        pm.HostIP,
	}, nil
}

// podIPs takes the pod's addresses from its default interface, IPv4 first,
// each kind in the order the plugins gave them.
func podIPs(res *gocni.Result) (*Result, error) {
	cfg, ok := res.Interfaces[defaultIfName]
	if !ok || len(cfg.IPConfigs) == 0 {
		return nil, fmt.Errorf("cni result names no address for %s", defaultIfName)
	}
	var ips []net.IP
	for _, c := range cfg.IPConfigs {
		ips = append(ips, c.IP)
	}
	slices.SortStableFunc(ips, func(a, b net.IP) int {
		return boolRank(a.To4() == nil) - boolRank(b.To4() == nil)
	})
	out := &Result{IP: ips[0].String()}
	for _, ip := range ips[1:] {
		out.AdditionalIPs = append(out.AdditionalIPs, ip.String())
	}
	return out, nil
}

// defaultIfName is the pod's interface on its network: go-cni's prefix and
// index 0 (index 0 among the networks after loopback).
const defaultIfName = "eth0"

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

func bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, pluginTimeout)
}
