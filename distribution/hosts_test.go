package distribution_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/berthrt/berth/distribution"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/testutil"
)

// writeHosts writes <dir>/<domain>/hosts.toml.
func writeHosts(t testing.TB, dir, domain, toml string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, domain), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, domain, distribution.HostsFile), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadHosts(t *testing.T) {
	all := distribution.CapPull | distribution.CapResolve | distribution.CapPush
	tests := []struct {
		name, domain, toml string
		plainHTTP          bool
		want               []distribution.Host
	}{
		{name: "no file", domain: "example.com", want: []distribution.Host{{Scheme: "https", Host: "example.com", Capabilities: all}}},
		{name: "docker.io", domain: "docker.io", want: []distribution.Host{{Scheme: "https", Host: "registry-1.docker.io", Capabilities: all}}},
		{name: "plain http", domain: "127.0.0.1:5000", plainHTTP: true, want: []distribution.Host{{Scheme: "http", Host: "127.0.0.1:5000", Capabilities: all}}},
		{
			name: "mirrors in file order", domain: "docker.io",
			toml: `
server = "https://registry-1.docker.io"
[host."https://z-mirror.example"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
  ca = "ca.pem"
  [host."https://z-mirror.example".header]
    x-a = "1"
    x-b = ["2", "3"]
[host."http://a-mirror.example:5000/v2"]
  capabilities = ["pull"]
  client = ["/abs/c.pem", "/abs/c.key"]
`,
			want: []distribution.Host{
				{Scheme: "https", Host: "z-mirror.example", Capabilities: distribution.CapPull | distribution.CapResolve, SkipVerify: true,
					CAs: []string{"DIR/docker.io/ca.pem"}, Header: http.Header{"X-A": {"1"}, "X-B": {"2", "3"}}},
				{Scheme: "http", Host: "a-mirror.example:5000", Capabilities: distribution.CapPull, ClientCerts: [][2]string{{"/abs/c.pem", "/abs/c.key"}}},
				{Scheme: "https", Host: "registry-1.docker.io", Capabilities: all},
			},
		},
		{
			name: "server settings at the top", domain: "r.example",
			toml: "server = \"http://r.example:8080\"\ncapabilities = [\"pull\", \"resolve\"]\nca = [\"a.pem\", \"/b.pem\"]\n",
			want: []distribution.Host{{Scheme: "http", Host: "r.example:8080", Capabilities: distribution.CapPull | distribution.CapResolve, CAs: []string{"DIR/r.example/a.pem", "/b.pem"}}},
		},
		{
			name: "no server means the default", domain: "r.example",
			toml: "[host.\"m.example\"]\n",
			want: []distribution.Host{{Scheme: "https", Host: "m.example", Capabilities: all}, {Scheme: "https", Host: "r.example", Capabilities: all}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.toml != "" {
				writeHosts(t, dir, tt.domain, tt.toml)
			}
			got, err := distribution.LoadHosts(dir, tt.domain, tt.plainHTTP)
			if err != nil {
				t.Fatal(err)
			}
			for i := range tt.want {
				for j, ca := range tt.want[i].CAs {
					tt.want[i].CAs[j] = strings.Replace(ca, "DIR", dir, 1)
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("hosts\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestLoadHostsDefaultFolder(t *testing.T) {
	dir := t.TempDir()
	writeHosts(t, dir, "_default", "[host.\"http://mirror.example\"]\ncapabilities = [\"pull\"]\n")
	got, err := distribution.LoadHosts(dir, "any.example", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Host != "mirror.example" || got[1].Host != "any.example" {
		t.Fatalf("hosts %+v, want the _default mirror then the registry", got)
	}
}

func TestLoadHostsRefused(t *testing.T) {
	for name, toml := range map[string]string{
		"not toml":           "server = ",
		"unknown capability": "[host.\"m.example\"]\ncapabilities = [\"fly\"]\n",
		"other scheme":       "server = \"ftp://r.example\"\n",
		"path prefix":        "[host.\"https://m.example/v2/prefix\"]\n",
		"override_path":      "[host.\"https://m.example/v2\"]\noverride_path = true\n",
		"ca not a string":    "ca = 3\n",
		"bad client":         "client = [[\"a\"]]\n",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeHosts(t, dir, "r.example", toml)
			if _, err := distribution.LoadHosts(dir, "r.example", false); !errdefs.IsInvalidArgument(err) {
				t.Fatalf("LoadHosts: %v, want invalid argument", err)
			}
		})
	}
	for _, domain := range []string{"", "..", "a/b"} {
		if _, err := distribution.LoadHosts(t.TempDir(), domain, false); !errdefs.IsInvalidArgument(err) {
			t.Fatalf("LoadHosts(%q): %v, want invalid argument", domain, err)
		}
	}
}

// TestMirror pulls through a hosts.toml whose mirror has one image and
// whose server has another: each is found where it is.
func TestMirror(t *testing.T) {
	upstream, mirror := startRegistry(t), startRegistry(t)
	direct := resolver(t, distribution.ResolverOptions{})
	inMirror, inUpstream := newImage(t, []byte("mirror")), newImage(t, []byte("upstream"))
	push(t, direct, inMirror, mirror.Addr+"/library/app:1")
	push(t, direct, inUpstream, upstream.Addr+"/library/app:2")

	dir := t.TempDir()
	writeHosts(t, dir, "docker.io", fmt.Sprintf("server = \"http://%s\"\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", upstream.Addr, mirror.Addr))
	r := resolver(t, distribution.ResolverOptions{HostsDir: dir})
	for ref, im := range map[string]*testImage{"app:1": inMirror, "app:2": inUpstream} {
		store := newStore(t)
		img, err := distribution.Pull(context.Background(), r, store, ref)
		if err != nil {
			t.Fatalf("pull %s: %v", ref, err)
		}
		if img.Name != "docker.io/library/"+ref {
			t.Fatalf("name %q", img.Name)
		}
		requireBlobs(t, store, im, im.reachable(t, im.root)...)
	}
	// Push goes to the server only: the mirror has no push capability.
	if err := distribution.Push(context.Background(), r, inMirror.store(t), "app:3", inMirror.root); err != nil {
		t.Fatal(err)
	}
	if _, _, err := direct.Resolve(context.Background(), upstream.Addr+"/library/app:3"); err != nil {
		t.Fatalf("the pushed image is not on the server: %v", err)
	}
	if _, _, err := direct.Resolve(context.Background(), mirror.Addr+"/library/app:3"); !errdefs.IsNotFound(err) {
		t.Fatalf("the pushed image on the mirror: %v, want not found", err)
	}
}

// TestTLS reaches a registry that serves HTTPS with a certificate of its
// own: trusted through ca in hosts.toml, or skip_verify, and refused
// without either.
func TestTLS(t *testing.T) {
	key, _, certPEM := newCert(t, "127.0.0.1")
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certDir := t.TempDir()
	certFile, keyFile := filepath.Join(certDir, "cert.pem"), filepath.Join(certDir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := testutil.StartRegistry(t, testutil.RegistryConfig{TLSCert: certFile, TLSKey: keyFile})
	ref := reg.Addr + "/berth/tls:1"
	im := newImage(t)

	newTLSResolver := func(toml string) *distribution.Resolver {
		dir := t.TempDir()
		if toml != "" {
			writeHosts(t, dir, reg.Addr, toml)
		}
		r, err := distribution.NewResolver(distribution.ResolverOptions{HostsDir: dir, DockerConfig: filepath.Join(dir, "none.json")})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	withCA := newTLSResolver(fmt.Sprintf("server = \"https://%s\"\nca = %q\n", reg.Addr, certFile))
	if err := distribution.Push(context.Background(), withCA, im.store(t), ref, im.root); err != nil {
		t.Fatalf("push trusting the ca: %v", err)
	}
	for name, r := range map[string]*distribution.Resolver{
		"ca":          withCA,
		"skip_verify": newTLSResolver(fmt.Sprintf("[host.\"https://%s\"]\nskip_verify = true\n", reg.Addr)),
	} {
		t.Run(name, func(t *testing.T) {
			store := newStore(t)
			if _, err := distribution.Pull(context.Background(), r, store, ref); err != nil {
				t.Fatal(err)
			}
			requireBlobs(t, store, im, im.reachable(t, im.root)...)
		})
	}
	_, err = distribution.Pull(context.Background(), newTLSResolver(""), newStore(t), ref)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("pull from an untrusted certificate: %v, want a certificate error", err)
	}
}
