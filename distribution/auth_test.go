package distribution_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/berthrt/berth/distribution"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/testutil"
)

// writeHtpasswd writes a bcrypt htpasswd file of user and password.
func writeHtpasswd(t testing.TB, user, password string) string {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(path, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeDockerConfig writes a config.json with user and password for
// host.
func writeDockerConfig(t testing.TB, host, user, password string) string {
	t.Helper()
	cfg := map[string]any{"auths": map[string]any{host: map[string]string{
		"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + password)),
	}}}
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func staticCredential(user, password string) distribution.CredentialFunc {
	return func(context.Context, string) (distribution.Credential, error) {
		return distribution.Credential{Username: user, Password: password}, nil
	}
}

func TestBasicAuth(t *testing.T) {
	reg := testutil.StartRegistry(t, testutil.RegistryConfig{Htpasswd: writeHtpasswd(t, "berth", "s3cret")})
	ref := reg.Addr + "/berth/private:1"
	im := newImage(t)

	anon := resolver(t, distribution.ResolverOptions{})
	if err := distribution.Push(context.Background(), anon, im.store(t), ref, im.root); !errdefs.IsPermissionDenied(err) {
		t.Fatalf("push without credentials: %v, want permission denied", err)
	}
	push(t, resolver(t, distribution.ResolverOptions{Credentials: staticCredential("berth", "s3cret")}), im, ref)

	t.Run("config.json", func(t *testing.T) {
		r := resolver(t, distribution.ResolverOptions{DockerConfig: writeDockerConfig(t, reg.Addr, "berth", "s3cret")})
		store := newStore(t)
		if _, err := distribution.Pull(context.Background(), r, store, ref); err != nil {
			t.Fatal(err)
		}
		requireBlobs(t, store, im, im.reachable(t, im.root)...)
	})
	t.Run("request before config.json", func(t *testing.T) {
		r := resolver(t, distribution.ResolverOptions{
			Credentials:  staticCredential("berth", "s3cret"),
			DockerConfig: writeDockerConfig(t, reg.Addr, "berth", "wrong"),
		})
		if _, err := distribution.Pull(context.Background(), r, newStore(t), ref); err != nil {
			t.Fatal(err)
		}
	})
	for name, r := range map[string]*distribution.Resolver{
		"wrong password":       resolver(t, distribution.ResolverOptions{DockerConfig: writeDockerConfig(t, reg.Addr, "berth", "wrong")}),
		"config for elsewhere": resolver(t, distribution.ResolverOptions{DockerConfig: writeDockerConfig(t, "other:5000", "berth", "s3cret")}),
		"none":                 anon,
	} {
		t.Run(name, func(t *testing.T) {
			store := newStore(t)
			_, err := distribution.Pull(context.Background(), r, store, ref)
			if !errdefs.IsPermissionDenied(err) {
				t.Fatalf("pull: %v, want permission denied", err)
			}
			requireAbsent(t, store, im.reachable(t, im.root)...)
		})
	}
}

// tokenServer issues registry bearer tokens (JWTs signed with ES256, the
// certificate in x5c) to one user, for the scopes asked.
type tokenServer struct {
	URL, Service, Issuer string
	RootCerts            string // PEM file of the signing certificate

	key  *ecdsa.PrivateKey
	cert []byte // DER

	mu     sync.Mutex // guards scopes
	scopes []string   // every scope asked for
}

func newTokenServer(t testing.TB, user, password string) *tokenServer {
	t.Helper()
	key, certDER, certPEM := newCert(t, "berth test token signer")
	ts := &tokenServer{Service: "berth-test-registry", Issuer: "berth-test-issuer", key: key, cert: certDER}
	ts.RootCerts = filepath.Join(t.TempDir(), "token-root.pem")
	if err := os.WriteFile(ts.RootCerts, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	addr := newLoopbackServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != user || p != password {
			http.Error(w, "bad credentials", http.StatusUnauthorized)
			return
		}
		scopes := r.URL.Query()["scope"]
		ts.mu.Lock()
		ts.scopes = append(ts.scopes, scopes...)
		ts.mu.Unlock()
		token, err := ts.sign(u, r.URL.Query().Get("service"), scopes)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"token": token, "access_token": token, "expires_in": 300})
	}))
	ts.URL = "http://" + addr + "/token"
	return ts
}

func (ts *tokenServer) sign(sub, aud string, scopes []string) (string, error) {
	type access struct {
		Type    string   `json:"type"`
		Name    string   `json:"name"`
		Actions []string `json:"actions"`
	}
	var grants []access
	for _, s := range scopes {
		parts := strings.Split(s, ":")
		if len(parts) != 3 {
			continue
		}
		grants = append(grants, access{Type: parts[0], Name: parts[1], Actions: strings.Split(parts[2], ",")})
	}
	now := time.Now()
	header := map[string]any{"typ": "JWT", "alg": "ES256", "x5c": []string{base64.StdEncoding.EncodeToString(ts.cert)}}
	claims := map[string]any{
		"iss": ts.Issuer, "sub": sub, "aud": aud, "jti": now.String(),
		"iat": now.Unix(), "nbf": now.Add(-time.Minute).Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"access": grants,
	}
	enc := func(v any) (string, error) {
		b, err := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b), err
	}
	h, err := enc(header)
	if err != nil {
		return "", err
	}
	c, err := enc(claims)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(h + "." + c))
	r, s, err := ecdsa.Sign(rand.Reader, ts.key, sum[:])
	if err != nil {
		return "", err
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return h + "." + c + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// newCert makes a self-signed P-256 certificate for 127.0.0.1 that may
// also sign, and returns the key, the DER and the PEM.
func newCert(t testing.TB, cn string) (*ecdsa.PrivateKey, []byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, der, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestBearerTokenAuth(t *testing.T) {
	ts := newTokenServer(t, "berth", "t0ken")
	reg := testutil.StartRegistry(t, testutil.RegistryConfig{
		TokenRealm: ts.URL, TokenService: ts.Service, TokenIssuer: ts.Issuer, TokenRootCerts: ts.RootCerts,
	})
	ref := reg.Addr + "/berth/tokened:1"
	im := newIndex(t)
	push(t, resolver(t, distribution.ResolverOptions{Credentials: staticCredential("berth", "t0ken")}), im, ref)

	r := resolver(t, distribution.ResolverOptions{DockerConfig: writeDockerConfig(t, reg.Addr, "berth", "t0ken")})
	store := newStore(t)
	if _, err := distribution.Pull(context.Background(), r, store, ref, distribution.WithAllPlatforms()); err != nil {
		t.Fatal(err)
	}
	requireBlobs(t, store, im, im.reachable(t, im.root)...)
	ts.mu.Lock()
	scopes := append([]string(nil), ts.scopes...)
	ts.mu.Unlock()
	if !contains(scopes, "repository:berth/tokened:pull") || !contains(scopes, "repository:berth/tokened:pull,push") {
		t.Fatalf("scopes asked %v, want pull for the pull and pull,push for the push", scopes)
	}

	bad := resolver(t, distribution.ResolverOptions{Credentials: staticCredential("berth", "wrong")})
	if _, err := distribution.Pull(context.Background(), bad, newStore(t), ref); !errdefs.IsPermissionDenied(err) {
		t.Fatalf("pull with a wrong password: %v, want permission denied", err)
	}
}
