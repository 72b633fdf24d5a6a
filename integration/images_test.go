package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/distribution"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/images/archive"
	"github.com/berthrt/berth/internal/testutil"
	transfersvc "github.com/berthrt/berth/services/transfer"
	"github.com/berthrt/berth/storage/content/contenttest"
	"github.com/berthrt/berth/storage/content/local"
)

// pushedImage is an image a test built and pushed to its registry.
type pushedImage struct {
	ref   string // as pushed: "127.0.0.1:port/test/app:1"
	root  ocispec.Descriptor
	blobs map[digest.Digest][]byte
}

// pushTestImage builds a linux/amd64 image of layers of random bytes of
// the given sizes, a config and a manifest in a content store of its own,
// and pushes it to ref with distribution.Push over plain HTTP.
func pushTestImage(t *testing.T, ref string, layerSizes ...int) pushedImage {
	t.Helper()
	ctx := context.Background()
	store, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	img := pushedImage{ref: ref, blobs: map[digest.Digest][]byte{}}
	add := func(mediaType string, data []byte) ocispec.Descriptor {
		d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
		if err := content.WriteBlob(ctx, store, "build-"+d.Digest.Encoded(), bytes.NewReader(data), d); err != nil {
			t.Fatal(err)
		}
		img.blobs[d.Digest] = data
		return d
	}
	var layers []ocispec.Descriptor
	cfg := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}, RootFS: ocispec.RootFS{Type: "layers"}}
	for _, n := range layerSizes {
		data := make([]byte, n)
		rand.Read(data)
		l := add(ocispec.MediaTypeImageLayer, data)
		layers = append(layers, l)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.Digest)
	}
	cfgData, _ := json.Marshal(cfg)
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: add(ocispec.MediaTypeImageConfig, cfgData), Layers: layers}
	mData, _ := json.Marshal(m)
	img.root = add(ocispec.MediaTypeImageManifest, mData)
	if err := distribution.Push(ctx, testResolver(t), store, ref, img.root); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return img
}

// testResolver reaches the test's registry over plain HTTP, with no
// Docker config.
func testResolver(t *testing.T) *distribution.Resolver {
	t.Helper()
	r, err := distribution.NewResolver(distribution.ResolverOptions{PlainHTTP: true, DockerConfig: filepath.Join(t.TempDir(), "none.json")})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// progressLog collects the reports of a transfer.
type progressLog struct {
	mu   sync.Mutex
	list []client.Progress
}

func (p *progressLog) add(pr client.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.list = append(p.list, pr)
}

// final returns the last status of each digest.
func (p *progressLog) final() map[digest.Digest]distribution.Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[digest.Digest]distribution.Status{}
	for _, pr := range p.list {
		out[pr.Digest] = pr.Status
	}
	return out
}

// transferLeases returns the transfer leases left in the namespace of ctx.
func transferLeases(t *testing.T, ctx context.Context, c *client.Client) []string {
	t.Helper()
	ls, err := c.LeasesService().List(ctx, `labels."`+transfersvc.LeaseLabel+`"`)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, l := range ls {
		ids = append(ids, l.ID)
	}
	return ids
}

func TestImagesPullPush(t *testing.T) {
	reg := testutil.StartRegistry(t, testutil.RegistryConfig{})
	img := pushTestImage(t, reg.Addr+"/test/app:1", 1<<20, 300<<10)
	d := newDaemon(t)
	c := d.client(t, "imgs")
	ctx := d.nsContext("imgs")

	t.Run("pull", func(t *testing.T) {
		var log progressLog
		got, err := c.Pull(ctx, img.ref, client.WithPlainHTTP(), client.WithPullProgress(log.add))
		if err != nil {
			t.Fatal(err)
		}
		if got.Name() != img.ref || got.Target().Digest != img.root.Digest {
			t.Fatalf("pulled %s %s, want %s %s", got.Name(), got.Target().Digest, img.ref, img.root.Digest)
		}
		final := log.final()
		for dgst := range img.blobs {
			if final[dgst] != distribution.StatusDone {
				t.Errorf("blob %s: last status %q, want done (reports: %v)", dgst, final[dgst], log.list)
			}
		}
		list, err := c.ListImages(ctx)
		if err != nil || len(list) != 1 || list[0].Name() != img.ref {
			t.Fatalf("images after the pull: %v, %v", list, err)
		}
		if ids := transferLeases(t, ctx, c); len(ids) != 0 {
			t.Errorf("leases left by the pull: %v", ids)
		}
		if _, err := c.GarbageCollect(ctx); err != nil {
			t.Fatal(err)
		}
		for dgst, want := range img.blobs {
			data, err := contenttest.ReadAll(ctx, c.ContentStore(), ocispec.Descriptor{Digest: dgst, Size: int64(len(want))})
			if err != nil || !bytes.Equal(data, want) {
				t.Errorf("blob %s after GC: %d bytes, %v", dgst, len(data), err)
			}
		}
		// A second pull finds everything there.
		log = progressLog{}
		if _, err := c.Pull(ctx, img.ref, client.WithPlainHTTP(), client.WithPullProgress(log.add)); err != nil {
			t.Fatal(err)
		}
		for dgst, st := range log.final() {
			if st != distribution.StatusExists && st != distribution.StatusDone {
				t.Errorf("second pull: blob %s %q", dgst, st)
			}
		}
	})

	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			ref   string
			class func(error) bool
		}{
			{reg.Addr + "/test/app:nope", errdefs.IsNotFound},
			{reg.Addr + "/test/missing:1", errdefs.IsNotFound},
			{reg.Addr + "/test/app@sha256:" + strings.Repeat("0", 64), errdefs.IsNotFound},
			{"Bad//Ref", errdefs.IsInvalidArgument},
		} {
			_, err := c.Pull(ctx, tc.ref, client.WithPlainHTTP())
			if !tc.class(err) {
				t.Errorf("pull %s: %v, want another class", tc.ref, err)
			}
		}
		if _, err := c.Pull(ctx, img.ref, client.WithPlainHTTP(), client.WithPlatforms("linux")); !errdefs.IsInvalidArgument(err) {
			t.Errorf("pull with platform linux: %v, want InvalidArgument", err)
		}
		if ids := transferLeases(t, ctx, c); len(ids) != 0 {
			t.Errorf("leases left by failed pulls: %v", ids)
		}
	})

	t.Run("push and pull in another namespace", func(t *testing.T) {
		localStore, err := c.GetImage(ctx, img.ref)
		if err != nil {
			t.Fatal(err)
		}
		var log progressLog
		copyRef := reg.Addr + "/test/app:copy"
		if err := c.Push(ctx, copyRef, localStore.Target(), client.WithPlainHTTP(), client.WithPushProgress(log.add)); err != nil {
			t.Fatal(err)
		}
		if st := log.final()[img.root.Digest]; st != distribution.StatusDone {
			t.Errorf("push: manifest status %q, want done", st)
		}
		ctx2 := d.nsContext("imgs2")
		got, err := c.Pull(ctx2, copyRef, client.WithPlainHTTP())
		if err != nil {
			t.Fatal(err)
		}
		if got.Target().Digest != img.root.Digest {
			t.Errorf("pulled %s back as %s, want %s", copyRef, got.Target().Digest, img.root.Digest)
		}
		if _, err := c.GetImage(ctx2, img.ref); !errdefs.IsNotFound(err) {
			t.Errorf("namespace imgs2 sees imgs's image: %v", err)
		}
	})

	t.Run("cancel", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := c.Pull(cctx, img.ref, client.WithPlainHTTP()); err == nil {
			t.Fatal("a cancelled pull succeeded")
		}
		eventually(t, time.Minute, "no transfer lease", func() bool { return len(transferLeases(t, ctx, c)) == 0 })
	})

	t.Run("berthctl", func(t *testing.T) {
		ctl := newCtl(t, d)
		d.nsContext("ctl")
		out := ctl.ok("-n", "ctl", "images", "pull", "--no-unpack", "--plain-http", img.ref)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if last := lines[len(lines)-1]; last != img.ref+" "+img.root.Digest.String() {
			t.Errorf("pull: last line %q, want %q\n%s", last, img.ref+" "+img.root.Digest.String(), out)
		}
		if !strings.Contains(out, "layer    sha256:") || !strings.Contains(out, "done") {
			t.Errorf("pull printed no progress lines:\n%s", out)
		}
		ls := ctl.ok("-n", "ctl", "images", "ls")
		if !strings.HasPrefix(ls, "REF") || !strings.Contains(ls, img.ref) || !strings.Contains(ls, "linux/amd64") || !strings.Contains(ls, "1.3 MiB") {
			t.Errorf("images ls:\n%s", ls)
		}
		ctl.prints(img.ref+"\n", "-n", "ctl", "images", "ls", "-q")
		ctl.prints("", "-n", "ctl", "images", "ls", "-q", "name==nothing")
		check := ctl.ok("-n", "ctl", "images", "check")
		if !strings.Contains(check, "complete (4/4)") {
			t.Errorf("images check:\n%s", check)
		}
		ctl.prints("docker.io/library/copy:1\n", "-n", "ctl", "images", "tag", img.ref, "copy:1")
		ctl.fails(1, []string{"already exists", "--force"}, "-n", "ctl", "images", "tag", img.ref, "copy:1")
		ctl.prints("team=ci\n", "-n", "ctl", "images", "label", "copy:1", "team=ci")
		ctl.prints(img.ref+"\ndocker.io/library/copy:1\n", "-n", "ctl", "images", "rm", "--sync", img.ref, "copy:1")
		ctl.prints("", "-n", "ctl", "images", "ls", "-q")
		if left := ctl.ok("-n", "ctl", "content", "ls", "-q"); left != "" {
			t.Errorf("content left after rm --sync:\n%s", left)
		}
		ctl.fails(1, []string{"not found"}, "-n", "ctl", "images", "rm", img.ref)
		ctl.fails(1, []string{"not found"}, "-n", "ctl", "images", "pull", "--plain-http", reg.Addr+"/test/app:nope")
		ctl.fails(2, nil, "-n", "ctl", "images", "pull")
		ctl.fails(2, []string{"--all-platforms"}, "-n", "ctl", "images", "pull", "--platform", "linux/arm64", "--all-platforms", img.ref)

		// push back under a new tag, from another namespace's pull.
		ctl.ok("-n", "ctl", "images", "pull", "--no-unpack", "--plain-http", img.ref)
		pushed := ctl.ok("-n", "ctl", "images", "push", "--plain-http", reg.Addr+"/test/app:ctl", img.ref)
		if !strings.HasSuffix(pushed, reg.Addr+"/test/app:ctl "+img.root.Digest.String()+"\n") {
			t.Errorf("push printed:\n%s", pushed)
		}
		lease := strings.TrimSpace(ctl.ok("-n", "ctl", "leases", "create", "--expires", "1h", "who=test"))
		if ids := ctl.ok("-n", "ctl", "leases", "ls", "-q"); !slices.Contains(strings.Fields(ids), lease) {
			t.Errorf("leases ls -q: %q lacks %q", ids, lease)
		}
		ctl.prints(lease+"\n", "-n", "ctl", "leases", "rm", lease)
	})
}

// TestImagesPullTime pulls an image of one 50 MiB layer from the loopback
// registry through berthd and with distribution.Pull directly, in the same
// run, and logs both times.
func TestImagesPullTime(t *testing.T) {
	reg := testutil.StartRegistry(t, testutil.RegistryConfig{})
	img := pushTestImage(t, reg.Addr+"/test/big:1", 50<<20)
	d := newDaemon(t)
	c := d.client(t, "time")
	for i := range 2 {
		store, err := local.NewStore(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, err := distribution.Pull(context.Background(), testResolver(t), store, img.ref); err != nil {
			t.Fatal(err)
		}
		direct := time.Since(start)

		ctx := d.nsContext("time")
		start = time.Now()
		if _, err := c.Pull(ctx, img.ref, client.WithPlainHTTP()); err != nil {
			t.Fatal(err)
		}
		daemon := time.Since(start)
		t.Logf("round %d: 50 MiB layer: distribution.Pull %v, client.Pull through berthd %v (%.2fx)", i, direct, daemon, daemon.Seconds()/direct.Seconds())
		if err := c.DeleteImage(ctx, img.ref, client.SynchronousDelete()); err != nil {
			t.Fatal(err)
		}
	}
}

// slowBlobProxy serves the registry at target through a reverse proxy on
// a loopback port that sends blob bodies at about 8 MiB/s, so that a test
// can act in the middle of a pull. It returns host:port and the count of
// blob bytes it has sent.
func slowBlobProxy(t *testing.T, target string) (string, *atomic.Int64) {
	t.Helper()
	u, err := url.Parse("http://" + target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	sent := new(atomic.Int64)
	rp.ModifyResponse = func(resp *http.Response) error {
		if strings.Contains(resp.Request.URL.Path, "/blobs/") {
			resp.Body = &slowBody{ReadCloser: resp.Body, sent: sent}
		}
		return nil
	}
	return serveLoopback(t, rp), sent
}

// serveLoopback serves h on a loopback port until the test ends and
// returns host:port.
func serveLoopback(t *testing.T, h http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// slowBody reads at most 64 KiB per 8 ms and counts what it read.
type slowBody struct {
	io.ReadCloser
	sent *atomic.Int64
}

func (b *slowBody) Read(p []byte) (int, error) {
	time.Sleep(8 * time.Millisecond)
	n, err := b.ReadCloser.Read(p[:min(len(p), 64<<10)])
	b.sent.Add(int64(n))
	return n, err
}

// TestImagesPullAfterDaemonKill kills berthd in the middle of a pull: the
// pull after the restart completes, resuming the ingest, and a collection
// leaves no transfer lease and no ingest behind.
func TestImagesPullAfterDaemonKill(t *testing.T) {
	reg := testutil.StartRegistry(t, testutil.RegistryConfig{})
	proxy, sent := slowBlobProxy(t, reg.Addr)
	const layerSize = 24 << 20
	pushTestImage(t, reg.Addr+"/test/slow:1", layerSize)
	img := pushedImage{ref: proxy + "/test/slow:1"}
	d := newDaemon(t)
	c := d.client(t, "kill")
	ctx := d.nsContext("kill")

	pulled := make(chan error, 1)
	go func() {
		_, err := c.Pull(ctx, img.ref, client.WithPlainHTTP())
		pulled <- err
	}()
	var offset int64
	eventually(t, 20*time.Second, "a layer half fetched", func() bool {
		sts, err := c.ContentStore().ListStatuses(ctx)
		for _, st := range sts {
			if st.Total == layerSize && st.Offset > 4<<20 {
				offset = st.Offset
				return true
			}
		}
		if err != nil {
			t.Logf("list ingests: %v", err)
		}
		return false
	})
	d.kill()
	if err := <-pulled; err == nil {
		t.Fatal("the pull succeeded though the daemon was killed")
	}
	d.start()
	c = d.client(t, "kill")
	got, err := c.Pull(ctx, img.ref, client.WithPlainHTTP())
	if err != nil {
		t.Fatalf("pull after the restart: %v", err)
	}
	// Resumed: the proxy sent the layer about once, not its first part
	// twice.
	t.Logf("killed with %d bytes of the layer persisted; %d blob bytes sent in all; pulled %s", offset, sent.Load(), got.Target().Digest)
	if sent.Load() > layerSize+offset/2 {
		t.Errorf("the proxy sent %d blob bytes for a %d-byte layer killed at %d: the pull started over", sent.Load(), layerSize, offset)
	}
	if _, err := c.GarbageCollect(ctx); err != nil {
		t.Fatal(err)
	}
	if ids := transferLeases(t, ctx, c); len(ids) != 0 {
		t.Errorf("transfer leases after the restart and GC: %v", ids)
	}
	if sts, err := c.ContentStore().ListStatuses(ctx); err != nil || len(sts) != 0 {
		t.Errorf("ingests after the pull: %v, %v", sts, err)
	}
	r, err := c.ListImages(ctx)
	if err != nil || len(r) != 1 {
		t.Fatalf("images: %v, %v", r, err)
	}
}

// TestImagesImportExport exports an image pulled through berthd with
// client.Export, imports the archive into another namespace with
// client.Import, and does the same with berthctl images export|import:
// each import is complete by `images check` and keeps its blobs through a
// collection, with no lease left.
func TestImagesImportExport(t *testing.T) {
	reg := testutil.StartRegistry(t, testutil.RegistryConfig{})
	img := pushTestImage(t, reg.Addr+"/test/arch:1", 512<<10, 64<<10)
	d := newDaemon(t)
	c := d.client(t, "exp")
	ctx := d.nsContext("exp")
	pulled, err := c.Pull(ctx, img.ref, client.WithPlainHTTP())
	if err != nil {
		t.Fatal(err)
	}

	// keeps wants every blob of img in the namespace of ctx after a
	// collection, and no lease.
	keeps := func(t *testing.T, ctx context.Context) {
		t.Helper()
		if _, err := c.GarbageCollect(ctx); err != nil {
			t.Fatal(err)
		}
		for dgst, want := range img.blobs {
			data, err := contenttest.ReadAll(ctx, c.ContentStore(), ocispec.Descriptor{Digest: dgst, Size: int64(len(want))})
			if err != nil || !bytes.Equal(data, want) {
				t.Errorf("blob %s after import and GC: %d bytes, %v", dgst, len(data), err)
			}
		}
		if ls, err := c.LeasesService().List(ctx); err != nil || len(ls) != 0 {
			t.Errorf("leases after import: %v, %v", ls, err)
		}
	}

	t.Run("client", func(t *testing.T) {
		var archived bytes.Buffer
		if err := c.Export(ctx, &archived, archive.WithImages(pulled.Metadata())); err != nil {
			t.Fatal(err)
		}
		ictx := d.nsContext("imp")
		var log progressLog
		imgs, err := c.Import(ictx, bytes.NewReader(archived.Bytes()), archive.WithProgress(log.add))
		if err != nil {
			t.Fatal(err)
		}
		if len(imgs) != 1 || imgs[0].Name() != img.ref || imgs[0].Target().Digest != img.root.Digest {
			t.Fatalf("imported %v, want %s %s", imgs, img.ref, img.root.Digest)
		}
		for dgst := range img.blobs {
			if st := log.final()[dgst]; st != distribution.StatusDone && st != distribution.StatusExists {
				t.Errorf("import: blob %s: last status %q", dgst, st)
			}
		}
		keeps(t, ictx)
		check := newCtl(t, d).ok("-n", "imp", "images", "check")
		if !strings.Contains(check, img.ref) || !strings.Contains(check, "complete (4/4)") {
			t.Errorf("images check after import:\n%s", check)
		}
		// Export refuses what it cannot find; Import what is no archive.
		gone := pulled.Metadata()
		gone.Target.Digest = digest.FromString("gone")
		if err := c.Export(ctx, io.Discard, archive.WithImages(gone)); !errdefs.IsNotFound(err) {
			t.Errorf("export of a missing target: %v, want NotFound", err)
		}
		if _, err := c.Import(ictx, strings.NewReader("not a tar")); !errdefs.IsInvalidArgument(err) {
			t.Errorf("import of a non-archive: %v, want InvalidArgument", err)
		}
		if ls, err := c.LeasesService().List(ictx); err != nil || len(ls) != 0 {
			t.Errorf("leases after a failed import: %v, %v", ls, err)
		}
	})

	t.Run("berthctl", func(t *testing.T) {
		ctl := newCtl(t, d)
		file := filepath.Join(t.TempDir(), "arch.tar")
		ctl.prints("", "-n", "exp", "images", "export", file, img.ref)
		ctl.prints(img.ref+" "+img.root.Digest.String()+"\n", "-n", "imp2", "images", "import", "--no-unpack", file)
		check := ctl.ok("-n", "imp2", "images", "check")
		if !strings.Contains(check, img.ref) || !strings.Contains(check, "complete (4/4)") {
			t.Errorf("images check after berthctl import:\n%s", check)
		}
		keeps(t, d.nsContext("imp2"))
	})
}

// TestImagesContentIngestFetch runs berthctl images pull|push --hosts-dir,
// content ingest (resumed after an interruption) and content fetch as a
// user types them.
func TestImagesContentIngestFetch(t *testing.T) {
	reg := testutil.StartRegistry(t, testutil.RegistryConfig{})
	img := pushTestImage(t, reg.Addr+"/test/cf:1", 256<<10, 32<<10)
	d := newDaemon(t)
	c := d.client(t, "cf")
	ctx := d.nsContext("cf")
	ctl := newCtl(t, d)

	t.Run("hosts-dir", func(t *testing.T) {
		// The registry speaks plain HTTP: without --plain-http only a
		// hosts.toml that says so reaches it.
		dir := t.TempDir()
		host := filepath.Join(dir, reg.Addr)
		if err := os.MkdirAll(host, 0o755); err != nil {
			t.Fatal(err)
		}
		toml := "server = \"http://" + reg.Addr + "\"\ncapabilities = [\"pull\", \"resolve\", \"push\"]\n"
		if err := os.WriteFile(filepath.Join(host, "hosts.toml"), []byte(toml), 0o644); err != nil {
			t.Fatal(err)
		}
		ctl.fails(1, nil, "-n", "hd", "images", "pull", img.ref)
		out := ctl.ok("-n", "hd", "images", "pull", "--no-unpack", "--hosts-dir", dir, img.ref)
		if !strings.HasSuffix(out, img.ref+" "+img.root.Digest.String()+"\n") {
			t.Errorf("pull --hosts-dir printed:\n%s", out)
		}
		pushed := ctl.ok("-n", "hd", "images", "push", "--hosts-dir", dir, reg.Addr+"/test/cf:hd", img.ref)
		if !strings.HasSuffix(pushed, reg.Addr+"/test/cf:hd "+img.root.Digest.String()+"\n") {
			t.Errorf("push --hosts-dir printed:\n%s", pushed)
		}
		ctl.fails(1, []string{"hosts_dir", "invalid argument"}, "-n", "hd", "images", "pull", "--hosts-dir", filepath.Join(dir, "missing"), img.ref)
		if _, err := c.Pull(ctx, img.ref, client.WithHostsDir("relative")); !errdefs.IsInvalidArgument(err) {
			t.Errorf("client.WithHostsDir(relative): %v, want InvalidArgument", err)
		}
	})

	t.Run("ingest", func(t *testing.T) {
		data := make([]byte, 3<<20)
		rand.Read(data)
		dgst := digest.FromBytes(data)
		// An ingest cut short by a stdin that ends early stays active,
		// refused at commit for its size.
		r := ctl.runIn(bytes.NewReader(data[:1<<20]), "-n", "cf", "content", "ingest", "--expected-size", "3145728", "up-1")
		if r.code != 1 || !strings.Contains(r.stderr, "write the rest") {
			t.Fatalf("short ingest: exit %d, stderr %s", r.code, r.stderr)
		}
		if active := ctl.ok("-n", "cf", "content", "active"); !strings.Contains(active, "up-1") || !strings.Contains(active, "1.0 MiB/3.0 MiB") {
			t.Errorf("content active after a short ingest:\n%s", active)
		}
		// Again with the whole data: the first MiB is skipped.
		r = ctl.runIn(bytes.NewReader(data), "-n", "cf", "content", "ingest", "--expected-size", "3145728", "--expected-digest", dgst.String(), "--label", "berth.io/gc.root=1", "up-1")
		if r.code != 0 || r.stdout != dgst.String()+"\n" || !strings.Contains(r.stderr, "resuming") {
			t.Fatalf("resumed ingest: exit %d, stdout %q, stderr %s", r.code, r.stdout, r.stderr)
		}
		if active := ctl.ok("-n", "cf", "content", "active"); strings.Contains(active, "up-1") {
			t.Errorf("ingest still active after its commit:\n%s", active)
		}
		if _, err := c.GarbageCollect(ctx); err != nil {
			t.Fatal(err)
		}
		got, err := contenttest.ReadAll(ctx, c.ContentStore(), ocispec.Descriptor{Digest: dgst, Size: int64(len(data))})
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("ingested blob after GC: %d bytes, %v", len(got), err)
		}
		// A blob that exists is success, whatever stdin holds.
		r = ctl.runIn(strings.NewReader("other bytes"), "-n", "cf", "content", "ingest", "--expected-digest", dgst.String(), "up-2")
		if r.code != 0 || r.stdout != dgst.String()+"\n" {
			t.Errorf("ingest of a blob that exists: exit %d, stdout %q, stderr %s", r.code, r.stdout, r.stderr)
		}
		// A wrong digest is refused and leaves nothing.
		r = ctl.runIn(strings.NewReader("other bytes"), "-n", "cf", "content", "ingest", "--expected-digest", digest.FromString("wanted").String(), "up-2")
		if r.code != 1 || !strings.Contains(r.stderr, "not the expected") {
			t.Errorf("ingest of the wrong bytes: exit %d, stderr %s", r.code, r.stderr)
		}
		if active := ctl.ok("-n", "cf", "content", "active"); strings.Contains(active, "up-2") {
			t.Errorf("a refused ingest is still active:\n%s", active)
		}
		ctl.fails(2, nil, "-n", "cf", "content", "ingest", "--expected-digest", "nope", "up-3")
	})

	t.Run("fetch", func(t *testing.T) {
		out := ctl.ok("-n", "fetch", "content", "fetch", "--plain-http", img.ref)
		if !strings.HasSuffix(out, img.ref+" "+img.root.Digest.String()+"\n") {
			t.Errorf("content fetch printed:\n%s", out)
		}
		ctl.prints("", "-n", "fetch", "images", "ls", "-q")
		fctx := d.nsContext("fetch")
		if _, err := c.GarbageCollect(fctx); err != nil {
			t.Fatal(err)
		}
		for dgst, want := range img.blobs {
			got, err := contenttest.ReadAll(fctx, c.ContentStore(), ocispec.Descriptor{Digest: dgst, Size: int64(len(want))})
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("fetched blob %s after GC: %d bytes, %v", dgst, len(got), err)
			}
		}
		if ids := transferLeases(t, fctx, c); len(ids) != 0 {
			t.Errorf("leases left by the fetch: %v", ids)
		}
		// Without its root label, the next collection takes it all.
		ctl.prints(img.root.Digest.String()+"\n", "-n", "fetch", "content", "rm", img.root.Digest.String())
		if _, err := c.GarbageCollect(fctx); err != nil {
			t.Fatal(err)
		}
		if left := ctl.ok("-n", "fetch", "content", "ls", "-q"); left != "" {
			t.Errorf("content left after rm of the root and GC:\n%s", left)
		}
		root, err := c.Fetch(fctx, img.ref, client.WithPlainHTTP())
		if err != nil || root.Digest != img.root.Digest {
			t.Errorf("client.Fetch: %v, %v", root, err)
		}
	})
}

// runIn runs berthctl -a ADDRESS args with stdin.
func (c *ctl) runIn(stdin io.Reader, args ...string) result {
	c.t.Helper()
	cmd := c.command(nil, append([]string{"-a", c.address}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		c.t.Fatalf("berthctl %s: %v", strings.Join(args, " "), err)
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
}

// TestImagesPullConfigNotJSON pulls through berthd an image whose config
// is not JSON: the pull is InvalidArgument naming the config, and no image
// is recorded.
func TestImagesPullConfigNotJSON(t *testing.T) {
	reg := testutil.StartRegistry(t, testutil.RegistryConfig{})
	ctx := context.Background()
	store, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	add := func(mediaType string, data []byte) ocispec.Descriptor {
		d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
		if err := content.WriteBlob(ctx, store, "build-"+d.Digest.Encoded(), bytes.NewReader(data), d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	cfg := add(ocispec.MediaTypeImageConfig, []byte("<html>not json</html>"))
	m, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: cfg, Layers: []ocispec.Descriptor{add(ocispec.MediaTypeImageLayer, []byte("layer"))}})
	ref := reg.Addr + "/test/badcfg:1"
	if err := distribution.Push(ctx, testResolver(t), store, ref, add(ocispec.MediaTypeImageManifest, m)); err != nil {
		t.Fatal(err)
	}
	d := newDaemon(t)
	c := d.client(t, "bad")
	nctx := d.nsContext("bad")
	_, err = c.Pull(nctx, ref, client.WithPlainHTTP())
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "config "+cfg.Digest.String()) {
		t.Fatalf("pull of an image whose config is not JSON: %v, want InvalidArgument naming the config", err)
	}
	if list, err := c.ListImages(nctx); err != nil || len(list) != 0 {
		t.Errorf("images after the refused pull: %v, %v", list, err)
	}
	newCtl(t, d).fails(1, []string{"not a JSON object"}, "-n", "bad", "images", "pull", "--plain-http", ref)
}

// TestImagesPullSilentRegistry: berthd configured with a short
// [registry] response_header_timeout fails a pull from a registry that
// accepts the connection and never answers, naming the host and the
// step, and keeps serving.
func TestImagesPullSilentRegistry(t *testing.T) {
	d := newDaemon(t)
	f, err := os.OpenFile(d.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString("[registry]\nresponse_header_timeout = \"500ms\"\n")
	if err := errors.Join(err, f.Close()); err != nil {
		t.Fatal(err)
	}
	d.kill()
	d.start()

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var held []net.Conn
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // never answered
		}
	}()
	defer func() {
		l.Close()
		<-accepted
		for _, c := range held {
			c.Close()
		}
	}()

	c := d.client(t, "silent")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a backstop far above the bound
	defer cancel()
	addr := l.Addr().String()
	_, err = c.Pull(ctx, addr+"/test/silent:1", client.WithPlainHTTP())
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "registry "+addr+", step resolve") {
		t.Fatalf("pull from a silent registry: %v, want unavailable naming %s and the resolve step", err, addr)
	}
	if ctx.Err() != nil {
		t.Fatal("the backstop ran out: the configured bound did not hold")
	}
	if _, err := c.ListImages(ctx); err != nil {
		t.Fatalf("berthd after the timed-out pull: %v", err)
	}
}
