package distribution_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/distribution"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/testutil"
)

// Bounds of the tests, never asserted as durations: the one a test trips
// is short, the others leave a loaded machine's loopback registry room to
// answer.
var (
	headerTimeouts = distribution.Timeouts{Connect: 10 * time.Second, ResponseHeader: 2 * time.Second, Stall: 10 * time.Second}
	stallTimeouts  = distribution.Timeouts{Connect: 10 * time.Second, ResponseHeader: 10 * time.Second, Stall: time.Second}
)

// silentListener accepts TCP connections on loopback and never answers
// them (it holds them open until Cleanup), as a wedged registry does.
func silentListener(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

// requireTimeout fails unless err is the TimeoutError of host and step,
// of class ErrUnavailable, with both named in its message.
func requireTimeout(t testing.TB, err error, host, step, phase string) {
	t.Helper()
	t.Logf("error: %v", err)
	var te *distribution.TimeoutError
	if !errors.As(err, &te) || !errdefs.IsUnavailable(err) {
		t.Fatalf("error %v, want an unavailable TimeoutError", err)
	}
	if te.Host != host || te.Step != step || te.Phase != phase {
		t.Fatalf("timeout of host %q step %q phase %q, want %q, %q, %q (error: %v)", te.Host, te.Step, te.Phase, host, step, phase, err)
	}
	if msg := err.Error(); !strings.Contains(msg, host) || !strings.Contains(msg, "step "+step) {
		t.Fatalf("error %q does not name host %s and step %s", msg, host, step)
	}
}

// TestTimeoutSilentRegistry: a registry that accepts connections and
// never answers fails a pull's resolve and a push's first check within
// the header bound, naming the host and the step.
func TestTimeoutSilentRegistry(t *testing.T) {
	addr := silentListener(t)
	r := resolver(t, distribution.ResolverOptions{Timeouts: headerTimeouts})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a backstop, far above the bounds
	defer cancel()

	_, err := distribution.Pull(ctx, r, newStore(t), addr+"/berth/silent:1")
	requireTimeout(t, err, addr, "resolve", "no response headers")

	im := newImage(t)
	err = distribution.Push(ctx, r, im.store(t), addr+"/berth/silent:1", im.root)
	requireTimeout(t, err, addr, "check", "no response headers")
	if ctx.Err() != nil {
		t.Fatal("the backstop ran out: a bound did not hold")
	}
}

// TestTimeoutStalledBlob: a registry that sends a layer's headers and
// part of its body, then nothing, fails the pull with the blob step's
// stall after the pull's retries, and leaves the ingest to resume.
func TestTimeoutStalledBlob(t *testing.T) {
	p, _, _, layer := proxiedImage(t, 1<<20, "berth/stall:1")
	p.stallAt[layer.Digest] = 64 << 10
	r := resolver(t, distribution.ResolverOptions{Timeouts: stallTimeouts})
	store := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	_, err := distribution.Pull(ctx, r, store, p.Addr+"/berth/stall:1")
	requireTimeout(t, err, p.Addr, "blob", "the response body did not move")
	if !strings.Contains(err.Error(), layer.Digest.String()) {
		t.Fatalf("error %v does not name the blob %s", err, layer.Digest)
	}
	st, err := store.Status(ctx, "pull-"+layer.Digest.String())
	if err != nil || st.Offset < 64<<10 {
		t.Fatalf("ingest after the stall: %+v, %v; want the bytes before the stall kept", st, err)
	}
}

// TestTimeoutSlowTokenEndpoint: a registry whose token endpoint never
// answers fails the pull with the token step, naming the token host.
func TestTimeoutSlowTokenEndpoint(t *testing.T) {
	_, _, certPEM := newCert(t, "berth test token signer")
	roots := filepath.Join(t.TempDir(), "token-root.pem")
	if err := os.WriteFile(roots, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	tokenHost := newLoopbackServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // never answers
	}))
	reg := testutil.StartRegistry(t, testutil.RegistryConfig{
		TokenRealm: "http://" + tokenHost + "/token", TokenService: "berth-test", TokenIssuer: "berth-test", TokenRootCerts: roots,
	})
	r := resolver(t, distribution.ResolverOptions{Timeouts: headerTimeouts, Credentials: staticCredential("berth", "t0ken")})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	_, err := distribution.Pull(ctx, r, newStore(t), reg.Addr+"/berth/tokened:1")
	requireTimeout(t, err, tokenHost, "token", "no response headers")
}

// TestIngestHeldByAnotherWriter: a pull that finds a blob's ingest held
// by a writer that writes nothing gives up after the idle bound, naming
// the ingest, instead of waiting for ever.
func TestIngestHeldByAnotherWriter(t *testing.T) {
	p, _, _, layer := proxiedImage(t, 64<<10, "berth/held:1")
	// The writer that holds the ingest writes nothing: the pull gives up
	// after the bounds' sum (here 4s) without a byte.
	r := resolver(t, distribution.ResolverOptions{Timeouts: distribution.Timeouts{Connect: time.Second, ResponseHeader: 2 * time.Second, Stall: time.Second}})
	store := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ref := "pull-" + layer.Digest.String()
	w, err := store.Writer(ctx, content.WithRef(ref), content.WithDescriptor(layer))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	_, err = distribution.Pull(ctx, r, store, p.Addr+"/berth/held:1")
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), ref) || !strings.Contains(err.Error(), "another writer") {
		t.Fatalf("pull of a blob another writer holds: %v, want unavailable naming ingest %s", err, ref)
	}
	if ctx.Err() != nil {
		t.Fatal("the backstop ran out: the wait was not bounded")
	}
}
