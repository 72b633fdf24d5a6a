package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthrt/berth/distribution"
	"github.com/berthrt/berth/internal/rpcguard"
)

func TestDefaultConfig(t *testing.T) {
	c := defaultConfig()
	if c.Root != "/var/lib/berth" || c.State != "/run/berth" || c.API.Address != "/run/berth/berth.sock" ||
		c.Runtime.Default != "runc" || c.Log.Level != "info" || c.Snapshotter.Default != "overlayfs" {
		t.Fatalf("defaults: %+v", c)
	}
	// What `config check` prints parses back to the same configuration.
	var out bytes.Buffer
	if err := printConfig(&out, c); err != nil {
		t.Fatal(err)
	}
	again := &Config{}
	if err := decodeConfig(out.Bytes(), again); err != nil {
		t.Fatalf("printed config does not parse: %v\n%s", err, out.String())
	}
	if again.Root != c.Root || again.API != c.API || again.Runtime != c.Runtime {
		t.Errorf("round trip: %+v, want %+v", again, c)
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.toml", "version = 1\nroot = \"/srv/berth\"\n[runtime]\ndefault = \"/usr/local/bin/myrunc\"\n[proxy_plugins.snap]\ntype = \"snapshot\"\naddress = \"/run/snap.sock\"\n")
	c, err := loadConfig(good, true)
	if err != nil {
		t.Fatal(err)
	}
	if c.Root != "/srv/berth" || c.State != "/run/berth" || c.Runtime.Default != "/usr/local/bin/myrunc" || c.ProxyPlugins["snap"].Address != "/run/snap.sock" {
		t.Errorf("loaded: %+v", c)
	}
	if lim, err := c.API.limits(); err != nil || lim != rpcguard.DefaultLimits {
		t.Errorf("api limits by default: %+v, %v; want %+v", lim, err, rpcguard.DefaultLimits)
	}
	if to, err := c.Registry.timeouts(); err != nil || to != distribution.DefaultTimeouts {
		t.Errorf("registry timeouts by default: %+v, %v; want %+v", to, err, distribution.DefaultTimeouts)
	}

	for _, tc := range []struct{ name, text, want string }{
		{"unknown key", "version = 1\nrooot = \"/x\"\n", "unknown key"},
		{"syntax", "version = 1\nroot = \n", "line 2"},
		{"relative root", "version = 1\nroot = \"x\"\n", "absolute"},
		{"relative runtime path", "version = 1\n[runtime]\ndefault = \"bin/runc\"\n", "absolute"},
		{"version", "version = 2\n", "version 2"},
		{"log level", "version = 1\n[log]\nlevel = \"loud\"\n", "log level"},
		{"proxy plugin", "version = 1\n[proxy_plugins.x]\ntype = \"snapshot\"\n", "proxy_plugins.x"},
		{"proxy plugin type", "version = 1\n[proxy_plugins.x]\ntype = \"diff\"\naddress = \"/run/x.sock\"\n", "the only type"},
		{"proxy plugin name", "version = 1\n[proxy_plugins.native]\ntype = \"snapshot\"\naddress = \"/run/x.sock\"\n", "built-in"},
		{"proxy plugin address", "version = 1\n[proxy_plugins.x]\ntype = \"snapshot\"\naddress = \"x.sock\"\n", "absolute"},
		{"default snapshotter", "version = 1\n[snapshotter]\ndefault = \"zfs\"\n", "snapshotter.default"},
		{"registry timeout zero", "version = 1\n[registry]\nstall_timeout = \"0s\"\n", "registry.stall_timeout \"0s\" must be positive"},
		{"registry timeout syntax", "version = 1\n[registry]\nconnect_timeout = \"soon\"\n", "registry.connect_timeout"},
		{"api connections", "version = 1\n[api]\nmax_connections_per_process = 0\n", "api.max_connections_per_process (0)"},
		{"api frame timeout", "version = 1\n[api]\nframe_timeout = \"0s\"\n", "api.frame_timeout"},
		{"gc negative", "version = 1\n[gc]\ninterval = \"-1s\"\n", "gc.interval \"-1s\" must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadConfig(write(strings.ReplaceAll(tc.name, " ", "-")+".toml", tc.text), true)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}

	if _, err := loadConfig(filepath.Join(dir, "absent.toml"), true); err == nil {
		t.Error("a named config file that is missing must be an error")
	}
	if c, err := loadConfig(filepath.Join(dir, "absent.toml"), false); err != nil || c.Root != "/var/lib/berth" {
		t.Errorf("the default config file may be absent: %v", err)
	}
}
