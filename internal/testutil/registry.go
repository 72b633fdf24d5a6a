package testutil

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Registry is a docker-registry (distribution v2) serving on a loopback
// port for one test.
type Registry struct {
	// Addr is host:port, as an image reference names the registry.
	Addr string
	// Dir holds its config, storage and log.
	Dir string
	// Log is the path of its log (access log included).
	Log string
}

// RegistryConfig is what StartRegistry may set beyond the defaults.
type RegistryConfig struct {
	// Htpasswd is the path of a bcrypt htpasswd file: basic auth.
	Htpasswd string
	// Token configures bearer-token auth: the token server's realm URL,
	// the service and issuer the tokens name, and a PEM bundle of the
	// certificates that sign them.
	TokenRealm, TokenService, TokenIssuer, TokenRootCerts string
	// TLSCert and TLSKey are PEM files: serve HTTPS.
	TLSCert, TLSKey string
}

// StartRegistry starts `docker-registry serve` on 127.0.0.1 with its
// storage in a temporary folder, waits until /v2/ answers, and stops it
// and removes everything in Cleanup. A missing docker-registry fails the
// test in CI and skips it elsewhere.
func StartRegistry(t testing.TB, cfg RegistryConfig) *Registry {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	Require(t, err == nil, "docker-registry not found in PATH (run make deps)")
	dir := t.TempDir()
	addr := FreeLoopbackAddr(t)
	r := &Registry{Addr: addr, Dir: dir, Log: filepath.Join(dir, "registry.log")}

	var b strings.Builder
	fmt.Fprintf(&b, "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n")
	fmt.Fprintf(&b, "storage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\n", filepath.Join(dir, "storage"))
	fmt.Fprintf(&b, "http:\n  addr: %s\n  secret: berth-test\n", addr)
	if cfg.TLSCert != "" {
		fmt.Fprintf(&b, "  tls:\n    certificate: %s\n    key: %s\n", cfg.TLSCert, cfg.TLSKey)
	}
	switch {
	case cfg.Htpasswd != "":
		fmt.Fprintf(&b, "auth:\n  htpasswd:\n    realm: berth-test\n    path: %s\n", cfg.Htpasswd)
	case cfg.TokenRealm != "":
		fmt.Fprintf(&b, "auth:\n  token:\n    realm: %s\n    service: %s\n    issuer: %s\n    rootcertbundle: %s\n",
			cfg.TokenRealm, cfg.TokenService, cfg.TokenIssuer, cfg.TokenRootCerts)
	}
	config := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(config, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	log, err := os.Create(r.Log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", config)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		t.Fatalf("start docker-registry: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		log.Close()
	})

	scheme := "http"
	client := &http.Client{Timeout: time.Second}
	if cfg.TLSCert != "" {
		scheme = "https"
		client.Transport = insecureTransport()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		resp, err := client.Get(scheme + "://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return r
			}
		}
		select {
		case err := <-exited:
			data, _ := os.ReadFile(r.Log)
			t.Fatalf("docker-registry exited: %v\n%s", err, data)
		case <-ctx.Done():
			data, _ := os.ReadFile(r.Log)
			t.Fatalf("docker-registry did not answer on %s within a minute\n%s", addr, data)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// FreeLoopbackAddr returns 127.0.0.1:<a port free a moment ago>.
func FreeLoopbackAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// insecureTransport accepts any certificate: for polling a test server's
// readiness only.
func insecureTransport() http.RoundTripper {
	return &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // readiness probe of a test server
}
