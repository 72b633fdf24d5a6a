package distribution

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	toml "github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"

	"github.com/berthrt/berth/errdefs"
)

// Capabilities are what a host may be asked to do.
type Capabilities uint8

const (
	// CapPull: fetch manifests and blobs by digest.
	CapPull Capabilities = 1 << iota
	// CapResolve: resolve a tag to a manifest's digest.
	CapResolve
	// CapPush: upload blobs and manifests, and tag.
	CapPush

	capAll = CapPull | CapResolve | CapPush
)

// Has reports whether c includes every capability of want.
func (c Capabilities) Has(want Capabilities) bool { return c&want == want }

func (c Capabilities) String() string {
	var s []string
	for _, n := range []struct {
		c    Capabilities
		name string
	}{{CapPull, "pull"}, {CapResolve, "resolve"}, {CapPush, "push"}} {
		if c.Has(n.c) {
			s = append(s, n.name)
		}
	}
	return strings.Join(s, ",")
}

// Host is one endpoint that serves a registry's repositories: the
// registry itself or a mirror of it.
type Host struct {
	// Scheme is "https" or "http" (plain HTTP).
	Scheme string
	// Host is host[:port].
	Host string
	// Capabilities say which operations go to this host.
	Capabilities Capabilities
	// SkipVerify accepts any TLS certificate.
	SkipVerify bool
	// CAs are PEM files of certificate authorities trusted besides the
	// system's.
	CAs []string
	// ClientCerts are pairs of PEM files (certificate, key) for TLS
	// client authentication.
	ClientCerts [][2]string
	// Header is sent with every request to this host.
	Header http.Header
}

// HostsFile is the name of the file in a registry's folder of the hosts
// directory.
const HostsFile = "hosts.toml"

// defaultHostsDir is the folder consulted when a registry has none.
const defaultHostsDir = "_default"

// LoadHosts returns the hosts to try for the registry domain, in order:
// the [host."…"] sections of <dir>/<domain>/hosts.toml (or of
// <dir>/_default/hosts.toml when the registry has no folder) in the order
// they appear, then the server. The file has containerd's format:
//
//	server = "https://registry.example"      # default: https://<domain>
//	[host."https://mirror.example"]           # no scheme means https
//	  capabilities = ["pull", "resolve"]      # default: pull, resolve, push
//	  skip_verify = true
//	  ca = "mirror-ca.pem"                    # or a list; relative to the file
//	  client = [["client.pem", "client.key"]] # or one file, or one pair
//	  [host."https://mirror.example".header]
//	    x-custom = "value"                    # or a list of values
//	[host."http://127.0.0.1:5000"]            # plain HTTP
//
// The top level may also set capabilities, skip_verify, ca, client and
// header for the server. Without a file the only host is the server:
// docker.io's is https://registry-1.docker.io; plainHTTP makes a default
// server plain HTTP. A host whose URL has a path other than /v2 is
// refused: berth reaches registries only at their /v2 root. dir "" means
// no hosts directory.
func LoadHosts(dir, domain string, plainHTTP bool) ([]Host, error) {
	if strings.ContainsAny(domain, `/\`) || domain == "" || domain == "." || domain == ".." {
		return nil, fmt.Errorf("registry %q: %w", domain, errdefs.ErrInvalidArgument)
	}
	server := defaultServer(domain, plainHTTP)
	if dir == "" {
		return []Host{server}, nil
	}
	path := filepath.Join(dir, domain, HostsFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		path = filepath.Join(dir, defaultHostsDir, HostsFile)
		data, err = os.ReadFile(path)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return []Host{server}, nil
	}
	if err != nil {
		return nil, err
	}
	hosts, err := parseHostsFile(data, filepath.Dir(path), server)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return hosts, nil
}

func defaultServer(domain string, plainHTTP bool) Host {
	h := Host{Scheme: "https", Host: domain, Capabilities: capAll}
	if domain == "docker.io" {
		h.Host = "registry-1.docker.io"
	}
	if plainHTTP {
		h.Scheme = "http"
	}
	return h
}

// hostConfig is what a [host."…"] section, or the top level for the
// server, may set.
type hostConfig struct {
	Capabilities []string       `toml:"capabilities"`
	CA           any            `toml:"ca"`
	Client       any            `toml:"client"`
	SkipVerify   *bool          `toml:"skip_verify"`
	Header       map[string]any `toml:"header"`
	OverridePath bool           `toml:"override_path"`
}

type hostsFileConfig struct {
	Server string `toml:"server"`
	hostConfig
	Host map[string]hostConfig `toml:"host"`
}

// parseHostsFile parses a hosts.toml whose relative paths are relative to
// base; server is the default server.
func parseHostsFile(data []byte, base string, server Host) ([]Host, error) {
	var cfg hostsFileConfig
	if err := toml.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	order, err := hostOrder(data)
	if err != nil {
		return nil, err
	}
	var hosts []Host
	for _, name := range order {
		h, err := makeHost(name, cfg.Host[name], base)
		if err != nil {
			return nil, err
		}
		hosts = append(hosts, h)
	}
	name := cfg.Server
	if name == "" {
		name = server.Scheme + "://" + server.Host
	}
	h, err := makeHost(name, cfg.hostConfig, base)
	if err != nil {
		return nil, err
	}
	return append(hosts, h), nil
}

// hostOrder returns the names of the [host."…"] sections in the order of
// the file (a map loses it, and mirrors are tried in that order).
func hostOrder(data []byte) ([]string, error) {
	var (
		p     unstable.Parser
		order []string
		seen  = map[string]bool{}
	)
	p.Reset(data)
	for p.NextExpression() {
		e := p.Expression()
		if e.Kind != unstable.Table {
			continue
		}
		var key []string
		for it := e.Key(); it.Next(); {
			key = append(key, string(it.Node().Data))
		}
		if len(key) >= 2 && key[0] == "host" && !seen[key[1]] {
			seen[key[1]] = true
			order = append(order, key[1])
		}
	}
	if err := p.Error(); err != nil {
		return nil, fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	return order, nil
}

func makeHost(name string, c hostConfig, base string) (Host, error) {
	bad := func(format string, args ...any) (Host, error) {
		return Host{}, fmt.Errorf("host %q: %s: %w", name, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
	}
	raw := name
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return bad("%v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return bad("scheme %q is neither http nor https", u.Scheme)
	}
	if u.Host == "" {
		return bad("no host")
	}
	if p := strings.TrimSuffix(u.Path, "/"); p != "" && p != "/v2" || c.OverridePath {
		return bad("a path other than /v2 (or override_path) is not supported")
	}
	h := Host{Scheme: u.Scheme, Host: u.Host, Capabilities: capAll}
	if c.Capabilities != nil {
		h.Capabilities = 0
		for _, s := range c.Capabilities {
			switch s {
			case "pull":
				h.Capabilities |= CapPull
			case "resolve":
				h.Capabilities |= CapResolve
			case "push":
				h.Capabilities |= CapPush
			default:
				return bad("unknown capability %q", s)
			}
		}
	}
	if c.SkipVerify != nil {
		h.SkipVerify = *c.SkipVerify
	}
	cas, err := stringList(c.CA)
	if err != nil {
		return bad("ca: %v", err)
	}
	for _, ca := range cas {
		h.CAs = append(h.CAs, resolvePath(base, ca))
	}
	if h.ClientCerts, err = clientPairs(c.Client, base); err != nil {
		return bad("client: %v", err)
	}
	for k, v := range c.Header {
		vs, err := stringList(v)
		if err != nil {
			return bad("header %q: %v", k, err)
		}
		if h.Header == nil {
			h.Header = http.Header{}
		}
		for _, s := range vs {
			h.Header.Add(k, s)
		}
	}
	return h, nil
}

// stringList accepts a string or a list of strings.
func stringList(v any) ([]string, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		return []string{v}, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("%v is not a string", e)
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%v is neither a string nor a list of strings", v)
}

// clientPairs accepts "cert" (certificate and key in one file), a pair
// ["cert", "key"], or a list of such.
func clientPairs(v any, base string) ([][2]string, error) {
	pair := func(e any) ([2]string, error) {
		if s, ok := e.(string); ok {
			return [2]string{resolvePath(base, s), resolvePath(base, s)}, nil
		}
		l, err := stringList(e)
		if err != nil || len(l) != 2 {
			return [2]string{}, fmt.Errorf("%v is neither a file nor a pair of files", e)
		}
		return [2]string{resolvePath(base, l[0]), resolvePath(base, l[1])}, nil
	}
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		p, err := pair(v)
		return [][2]string{p}, err
	case []any:
		if l, err := stringList(v); err == nil && len(l) == 2 {
			p, err := pair(v)
			return [][2]string{p}, err
		}
		var out [][2]string
		for _, e := range v {
			p, err := pair(e)
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%v is not a client certificate", v)
}

func resolvePath(base, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(base, p)
}

// tlsConfig is the TLS configuration to reach h with; nil for plain HTTP.
func (h Host) tlsConfig() (*tls.Config, error) {
	if h.Scheme != "https" {
		return nil, nil
	}
	cfg := &tls.Config{InsecureSkipVerify: h.SkipVerify, MinVersion: tls.VersionTLS12} //nolint:gosec // skip_verify is the user's choice
	if len(h.CAs) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		for _, ca := range h.CAs {
			pem, err := os.ReadFile(ca)
			if err != nil {
				return nil, fmt.Errorf("host %s: ca: %w", h.Host, err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("host %s: ca %s holds no PEM certificate: %w", h.Host, ca, errdefs.ErrInvalidArgument)
			}
		}
		cfg.RootCAs = pool
	}
	for _, cc := range h.ClientCerts {
		certPEM, err := os.ReadFile(cc[0])
		if err != nil {
			return nil, fmt.Errorf("host %s: client certificate: %w", h.Host, err)
		}
		keyPEM := certPEM
		if cc[1] != cc[0] {
			if keyPEM, err = os.ReadFile(cc[1]); err != nil {
				return nil, fmt.Errorf("host %s: client key: %w", h.Host, err)
			}
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("host %s: client certificate %s: %w: %w", h.Host, cc[0], err, errdefs.ErrInvalidArgument)
		}
		cfg.Certificates = append(cfg.Certificates, cert)
	}
	return cfg, nil
}
