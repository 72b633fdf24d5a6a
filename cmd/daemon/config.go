package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/pelletier/go-toml/v2"

	"github.com/berthrt/berth/distribution"
	"github.com/berthrt/berth/identifiers"
	"github.com/berthrt/berth/internal/rpcguard"
)

// Config is berthd's configuration file. Every field has a default, so an
// empty file (or none) is a valid configuration; `berthd config default`
// prints defaultConfigText, which documents each one.
type Config struct {
	// Version of the file format; 1.
	Version int `toml:"version"`
	// Root holds durable data: metadata, content, snapshots.
	Root string `toml:"root"`
	// State holds what lives as long as the machine is up: bundles, shim
	// sockets, FIFOs.
	State string    `toml:"state"`
	API   APIConfig `toml:"api"`
	Log   struct {
		Level string `toml:"level"`
	} `toml:"log"`
	Runtime     RuntimeConfig `toml:"runtime"`
	Snapshotter struct {
		Default string `toml:"default"`
	} `toml:"snapshotter"`
	Registry RegistryConfig `toml:"registry"`
	GC       GCConfig       `toml:"gc"`
	CRI      CRIConfig      `toml:"cri"`
	Metrics  struct {
		Address string `toml:"address"`
	} `toml:"metrics"`
	ProxyPlugins map[string]ProxyPlugin `toml:"proxy_plugins"`
}

// APIConfig is the daemon's socket and the bounds of its clients.
type APIConfig struct {
	Address                  string `toml:"address"`
	UID                      int    `toml:"uid"`
	GID                      int    `toml:"gid"`
	MaxConnectionsPerProcess int    `toml:"max_connections_per_process"`
	MaxConnectionsPerUser    int    `toml:"max_connections_per_user"`
	MaxSilentPerProcess      int    `toml:"max_silent_connections_per_process"`
	FrameTimeout             string `toml:"frame_timeout"`
}

// limits returns the bounds of the API's connections.
func (c APIConfig) limits() (rpcguard.Limits, error) {
	l := rpcguard.Limits{PerProcess: c.MaxConnectionsPerProcess, PerUser: c.MaxConnectionsPerUser, Silent: c.MaxSilentPerProcess}
	if l.PerProcess < 1 || l.PerUser < 1 || l.Silent < 1 {
		return l, fmt.Errorf("api.max_connections_per_process (%d), api.max_connections_per_user (%d) and api.max_silent_connections_per_process (%d) must be positive", l.PerProcess, l.PerUser, l.Silent)
	}
	return l, parseDurations("api", true, namedDuration{"frame_timeout", c.FrameTimeout, &l.FrameTimeout})
}

// RuntimeConfig is how containers are run: the OCI runtime, the shims.
type RuntimeConfig struct {
	Default         string `toml:"default"`
	Shim            string `toml:"shim"`
	Spares          int    `toml:"spare_shims"`
	ShimCallTimeout string `toml:"shim_call_timeout"`
}

// callTimeout returns shim_call_timeout.
func (c RuntimeConfig) callTimeout() (time.Duration, error) {
	var d time.Duration
	return d, parseDurations("runtime", true, namedDuration{"shim_call_timeout", c.ShimCallTimeout, &d})
}

// CRIConfig configures the Kubernetes CRI endpoint (package cri).
type CRIConfig struct {
	Enabled      bool   `toml:"enabled"`
	Address      string `toml:"address"`
	SandboxImage string `toml:"sandbox_image"`
	// StreamAddress, StreamPort and StreamIdleTimeout place the streaming
	// server of exec, attach and port-forward (package cri/streaming).
	StreamAddress     string `toml:"stream_address"`
	StreamPort        int    `toml:"stream_port"`
	StreamIdleTimeout string `toml:"stream_idle_timeout"`
	CNI               struct {
		BinDirs []string `toml:"bin_dirs"`
		ConfDir string   `toml:"conf_dir"`
	} `toml:"cni"`
}

// GCConfig schedules garbage collection; durations as time.ParseDuration
// reads them, validated with the config.
type GCConfig struct {
	Interval    string `toml:"interval"`
	DeleteDelay string `toml:"delete_delay"`
	IngestTTL   string `toml:"ingest_ttl"`
}

// durations returns the parsed durations of c.
func (c GCConfig) durations() (interval, deleteDelay, ingestTTL time.Duration, err error) {
	err = parseDurations("gc", false,
		namedDuration{"interval", c.Interval, &interval},
		namedDuration{"delete_delay", c.DeleteDelay, &deleteDelay},
		namedDuration{"ingest_ttl", c.IngestTTL, &ingestTTL})
	return interval, deleteDelay, ingestTTL, err
}

// RegistryConfig reaches registries for pulls and pushes; durations as
// time.ParseDuration reads them, validated with the config.
type RegistryConfig struct {
	ConfigPath            string `toml:"config_path"`
	DockerConfig          string `toml:"docker_config"`
	ConnectTimeout        string `toml:"connect_timeout"`
	ResponseHeaderTimeout string `toml:"response_header_timeout"`
	StallTimeout          string `toml:"stall_timeout"`
}

// timeouts returns the parsed bounds of every registry request.
func (c RegistryConfig) timeouts() (distribution.Timeouts, error) {
	var t distribution.Timeouts
	err := parseDurations("registry", true,
		namedDuration{"connect_timeout", c.ConnectTimeout, &t.Connect},
		namedDuration{"response_header_timeout", c.ResponseHeaderTimeout, &t.ResponseHeader},
		namedDuration{"stall_timeout", c.StallTimeout, &t.Stall})
	return t, err
}

// namedDuration is one duration key of a config section.
type namedDuration struct {
	name string
	s    string
	to   *time.Duration
}

// parseDurations parses each of ds, keys of section, refusing negative
// ones, and zero ones too when positive is set.
func parseDurations(section string, positive bool, ds ...namedDuration) error {
	for _, d := range ds {
		v, err := time.ParseDuration(d.s)
		if err != nil {
			return fmt.Errorf("%s.%s: %v", section, d.name, err)
		}
		if v < 0 || positive && v == 0 {
			want := "must not be negative"
			if positive {
				want = "must be positive"
			}
			return fmt.Errorf("%s.%s %q %s", section, d.name, d.s, want)
		}
		*d.to = v
	}
	return nil
}

// proxySnapshot is the type of a proxy plugin that serves the snapshots
// API (an external snapshotter).
const proxySnapshot = "snapshot"

// ProxyPlugin is an external service reached over ttrpc.
type ProxyPlugin struct {
	Type    string `toml:"type"`
	Address string `toml:"address"`
}

// defaultConfigText is the default configuration, commented; the defaults
// in code are parsed from it, so the two cannot drift apart.
const defaultConfigText = `# berthd configuration. Every key is optional; the values below are the
# defaults. Command-line flags (--root, --state, --address, --log-level)
# override the file.

# version of this file's format.
version = 1

# root holds durable data: the metadata database (meta.db), the content
# store, the snapshotters' layers, and tmpmounts (where the daemon mounts a
# snapshot it reads or writes). It is made, or tightened at every start, to
# mode 0700: layers hold what containers and images wrote, setuid files and
# device nodes included, which no host user but root may reach.
root = "/var/lib/berth"

# state holds what lives as long as the machine is up: one bundle folder per
# task (<state>/<namespace>/<id>, with the shim's socket, pid and exit files,
# and the container's rootfs), the runtime's state and the clients' FIFOs.
# Keep it on a tmpfs. It is made, or tightened at every start, to mode 0711
# (the API socket may be in it); each bundle is 0700.
state = "/run/berth"

[api]
# address of the daemon's ttrpc socket (a file-based unix socket).
address = "/run/berth/berth.sock"
# uid and gid own the socket, which has mode 0660: root and members of gid
# may call the daemon, nobody else. Whoever may call it is root-equivalent:
# a caller chooses the runtime binary, the spec (hooks, mounts, root folder)
# and where output files go, and the daemon runs them as root.
uid = 0
gid = 0
# Bounds of the clients' connections, so that no client can hold the
# daemon's file descriptors or memory with connections it does not use: a
# process (by the pid the kernel reports for the socket's peer) may hold
# max_connections_per_process connections at once and a user
# max_connections_per_user (a client library holds one per client); more
# are closed at once. The CRI socket ([cri]) has the same caps, counted
# apart. Of a process's connections, at most
# max_silent_connections_per_process may have sent no whole request yet (a
# client may connect early and call later, so these are not timed out; a
# flood of them is refused). A connection that does not send a whole
# request frame within frame_timeout of its first byte is closed; one that
# waits between requests may wait for ever.
max_connections_per_process = 128
max_connections_per_user = 1024
max_silent_connections_per_process = 32
frame_timeout = "10s"

[log]
# level: debug, info, warn or error.
level = "info"

[runtime]
# default is the OCI runtime of containers that name none: "runc" (looked
# up in PATH) or the absolute path of any binary with runc's command line.
default = "runc"
# shim is the berth-shim binary: empty means the one next to berthd, else
# berth-shim in PATH.
shim = ""
# spare_shims is how many shims berthd keeps started and waiting, bound to
# no container, so that creating a task does not wait for a shim to start
# (about 6 ms of each run); a new one is started after each is taken. A
# spare holds no container and exits with the daemon. 0 starts none.
spare_shims = 1
# shim_call_timeout bounds each call berthd makes to a shim (create, start,
# kill, exec, delete, ...) when the client's call has no deadline of its
# own; a client's deadline bounds it first. Waiting for a process's exit
# has no bound. A shim call that exceeds it fails with DeadlineExceeded, so
# that a runtime that hangs holds the container's calls no longer (the shim
# then kills the hung runtime).
shim_call_timeout = "2m"

[snapshotter]
# default snapshotter for containers made from images and for snapshot
# calls that name none: "overlayfs", "native", "btrfs" or the name of a
# proxy plugin of type "snapshot". btrfs is available when
# <root>/snapshots/btrfs is on a btrfs filesystem (mount one there, or keep
# root on btrfs); elsewhere introspection lists it with the reason.
default = "overlayfs"

[registry]
# config_path is a folder of per-host settings, one folder per registry
# host holding a hosts.toml, in the format containerd uses.
config_path = "/etc/berth/certs.d"
# docker_config is a Docker config.json whose credentials (auths and
# credential helpers) pulls and pushes use when the request brings none;
# empty means $DOCKER_CONFIG/config.json or ~/.docker/config.json.
docker_config = ""
# Bounds of every request to a registry host or its token endpoint (resolve,
# token, manifest, blob, and a push's checks and uploads). A host that
# exceeds one fails the step with an error naming the host and the step, and
# a pull tries the next host (a mirror) or resumes the blob later.
# connect_timeout bounds name lookup, TCP connect and TLS handshake.
connect_timeout = "30s"
# response_header_timeout bounds the wait for an answer once a request is
# sent.
response_header_timeout = "30s"
# stall_timeout bounds how long an upload or a download may go without a
# byte; a large blob takes as long as it needs while bytes flow. A pull that
# finds a blob's download held by another writer waits while it moves, and
# gives up after the sum of the three bounds without a byte.
stall_timeout = "30s"

[gc]
# interval between garbage collections; "0s" runs none on a schedule.
# Collection marks from images, containers, leases and content labelled
# berth.io/gc.root along berth.io/gc.ref.* labels, and removes what nothing
# reaches.
interval = "1h"
# delete_delay: a collection also runs this long after a delete (an image,
# a lease, content), so that a burst of deletes makes one collection.
delete_delay = "2s"
# ingest_ttl: an unfinished write that no lease holds and that received no
# bytes for this long is removed.
ingest_ttl = "24h"

[cri]
# enabled serves the Kubernetes CRI (RuntimeService and ImageService, CRI
# v1 over gRPC) for the kubelet, crictl and critest. Its pods, containers
# and images live in the berth namespace "k8s.io"; pulls use [registry].
enabled = true
# address of the CRI's gRPC socket, with the API socket's owner and mode.
# With a state folder other than /run/berth (--state or state above) and
# this default address, it is <state>/cri.sock.
address = "/run/berth/cri.sock"
# sandbox_image is the image of each pod's sandbox container, which holds
# the pod's namespaces; it is pulled when missing and reported pinned, so
# that the kubelet's image garbage collection keeps it.
sandbox_image = "registry.k8s.io/pause:3.10"
# stream_address and stream_port are where the streaming server listens
# (HTTP, SPDY and WebSocket) whose URLs Exec, Attach and PortForward
# return to the kubelet: loopback by default, since a URL is a bearer
# token; port 0 picks a free port at each start. A URL expires a minute
# after it was handed out, unused; a stream idle for stream_idle_timeout
# is closed.
stream_address = "127.0.0.1"
stream_port = 0
stream_idle_timeout = "4h"

[cri.cni]
# bin_dirs are searched, in order, for CNI plugins (Debian's
# containernetworking-plugins installs them in /usr/lib/cni).
bin_dirs = ["/usr/lib/cni", "/opt/cni/bin"]
# conf_dir holds the CNI network configs; the first (by name) is used.
# Without one, pods get only a loopback device and the CRI reports the
# network not ready.
conf_dir = "/etc/cni/net.d"

[metrics]
# address (host:port) serves Prometheus metrics over HTTP at /v1/metrics:
# per-container cgroup metrics (CPU, memory, pids, OOM events) labelled
# namespace and container_id, the API's calls and latencies, shims,
# restore time, garbage collections, and Go runtime and process metrics.
# Empty: off. Scrapes share one round of Stats calls to the shims per 10s,
# 4 shims at a time, 2s each at most. Anyone who can reach it can read
# the names of every namespace and container: keep it on loopback or a
# private network, e.g. "127.0.0.1:1338".
address = ""

# External services over ttrpc. A plugin of type "snapshot" is a
# snapshotter that serves berth's snapshots API on the unix socket at
# address (the native-snapshotter program is one); it is served beside
# overlayfs and native under its name, with each namespace's records kept
# by berthd, and its unused snapshots are garbage collected. It must be
# listening when berthd starts; otherwise introspection lists it with its
# error and calls naming it fail until berthd is restarted.
#
# [proxy_plugins.mysnap]
# type = "snapshot"
# address = "/run/mysnap.sock"
`

// maxSpareShims bounds runtime.spare_shims: each spare is a process.
const maxSpareShims = 64

// defaultConfig returns the configuration of defaultConfigText.
func defaultConfig() *Config {
	c := &Config{}
	if err := decodeConfig([]byte(defaultConfigText), c); err != nil {
		panic(fmt.Sprintf("the built-in default configuration is broken: %v", err))
	}
	return c
}

// loadConfig reads path over the defaults. A missing file is an error only
// when the user named it (required).
func loadConfig(path string, required bool) (*Config, error) {
	c := defaultConfig()
	if path == "" {
		return c, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !required {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := decodeConfig(data, c); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// decodeConfig decodes data onto c, refusing unknown keys so that a typo is
// reported rather than silently ignored.
func decodeConfig(data []byte, c *Config) error {
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		var strict *toml.StrictMissingError
		if errors.As(err, &strict) {
			return fmt.Errorf("unknown key: %s", strings.TrimSpace(strict.String()))
		}
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return fmt.Errorf("line %d column %d: %v", row, col, de)
		}
		return err
	}
	return c.validate()
}

func (c *Config) validate() error {
	if c.Version != 1 {
		return fmt.Errorf("version %d is not supported (1 is)", c.Version)
	}
	for name, p := range map[string]string{"root": c.Root, "state": c.State, "api.address": c.API.Address} {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("%s %q must be an absolute path", name, p)
		}
	}
	if rel, err := filepath.Rel(c.Root, c.API.Address); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
		return fmt.Errorf("api.address %q is inside root %q, which only root may enter: put the socket elsewhere (the state folder)", c.API.Address, c.Root)
	}
	if c.Runtime.Default == "" {
		return errors.New("runtime.default must not be empty")
	}
	if strings.Contains(c.Runtime.Default, "/") && !filepath.IsAbs(c.Runtime.Default) {
		return fmt.Errorf("runtime.default %q: a path must be absolute", c.Runtime.Default)
	}
	if err := c.CRI.validate(); err != nil {
		return err
	}
	if c.Runtime.Spares < 0 || c.Runtime.Spares > maxSpareShims {
		return fmt.Errorf("runtime.spare_shims %d: want 0 to %d", c.Runtime.Spares, maxSpareShims)
	}
	if _, err := c.Runtime.callTimeout(); err != nil {
		return err
	}
	if _, err := parseLevel(c.Log.Level); err != nil {
		return err
	}
	if _, _, _, err := c.GC.durations(); err != nil {
		return err
	}
	if a := c.Metrics.Address; a != "" {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("metrics.address %q: want host:port: %v", a, err)
		}
	}
	if _, err := c.Registry.timeouts(); err != nil {
		return err
	}
	if _, err := c.API.limits(); err != nil {
		return err
	}
	for name, p := range c.ProxyPlugins {
		if p.Type == "" || p.Address == "" {
			return fmt.Errorf("proxy_plugins.%s: type and address are required", name)
		}
		if p.Type != proxySnapshot {
			return fmt.Errorf("proxy_plugins.%s: type %q: the only type is %q", name, p.Type, proxySnapshot)
		}
		if err := identifiers.Validate(name); err != nil {
			return fmt.Errorf("proxy_plugins.%s: the name: %v", name, err)
		}
		if slices.Contains(builtinSnapshotters, name) {
			return fmt.Errorf("proxy_plugins.%s: the name is a built-in snapshotter's", name)
		}
		if !filepath.IsAbs(p.Address) {
			return fmt.Errorf("proxy_plugins.%s: address %q must be an absolute path", name, p.Address)
		}
	}
	if d := c.Snapshotter.Default; !slices.Contains(builtinSnapshotters, d) && c.ProxyPlugins[d].Type != proxySnapshot {
		return fmt.Errorf("snapshotter.default %q: neither a built-in snapshotter (%s) nor a proxy plugin of type %q",
			d, strings.Join(builtinSnapshotters, ", "), proxySnapshot)
	}
	return nil
}

func printConfig(w io.Writer, c *Config) error {
	return toml.NewEncoder(w).Encode(c)
}

func (c *CRIConfig) validate() error {
	if !filepath.IsAbs(c.Address) {
		return fmt.Errorf("cri.address %q must be an absolute path", c.Address)
	}
	if c.SandboxImage == "" {
		return errors.New("cri.sandbox_image must not be empty")
	}
	if _, err := reference.ParseDockerRef(c.SandboxImage); err != nil {
		return fmt.Errorf("cri.sandbox_image %q: %v", c.SandboxImage, err)
	}
	for _, d := range c.CNI.BinDirs {
		if !filepath.IsAbs(d) {
			return fmt.Errorf("cri.cni.bin_dirs: %q must be an absolute path", d)
		}
	}
	if !filepath.IsAbs(c.CNI.ConfDir) {
		return fmt.Errorf("cri.cni.conf_dir %q must be an absolute path", c.CNI.ConfDir)
	}
	if c.StreamAddress == "" {
		return errors.New("cri.stream_address must not be empty")
	}
	if c.StreamPort < 0 || c.StreamPort > 65535 {
		return fmt.Errorf("cri.stream_port %d must be 0 to 65535", c.StreamPort)
	}
	if d, err := time.ParseDuration(c.StreamIdleTimeout); err != nil || d <= 0 {
		return fmt.Errorf("cri.stream_idle_timeout %q must be a positive duration such as \"4h\"", c.StreamIdleTimeout)
	}
	return nil
}
