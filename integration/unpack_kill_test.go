package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/distribution"
	"github.com/berthrt/berth/images/archive"
	"github.com/berthrt/berth/internal/testimage"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/namespaces"
	"github.com/berthrt/berth/snapshots"
	"github.com/berthrt/berth/storage/content/local"
	"github.com/berthrt/berth/storage/metadata"
	"github.com/berthrt/berth/unpack"
)

const (
	// slowLayerFiles is the number of small files of slowImage's middle
	// layer: enough that applying it takes long (seconds) next to the
	// few milliseconds between seeing it under way and the kill.
	slowLayerFiles = 8000
	// slowLayerBig is the size of the large file at the end of that
	// layer, of bytes gzip cannot shrink.
	slowLayerBig = 8 << 20
	// killAfterInodes is how many inodes the layer's temporary snapshot
	// must hold before the test kills berthd: a layer under way.
	killAfterInodes = 500
)

// slowImage is an image whose middle layer takes long to apply.
type slowImage struct {
	img *testimage.Image
	// bigSum is the SHA-256 (hex) of /many/big as the image leaves it.
	bigSum string
}

// buildSlowImage builds three layers: busybox; slowLayerFiles small files
// under /many and a large file /many/big; a last layer that rewrites
// /many/00000, deletes /many/00001 and adds /last.
func buildSlowImage(t *testing.T) slowImage {
	t.Helper()
	base, err := testimage.BusyboxEntries("")
	if err != nil {
		t.Fatal(err)
	}
	many := []testimage.Entry{testimage.Dir("many")}
	for i := range slowLayerFiles {
		name := fmt.Sprintf("many/%05d", i)
		many = append(many, testimage.File(name, strings.Repeat(name+"\n", 64)))
	}
	big := make([]byte, slowLayerBig)
	rand.NewChaCha8([32]byte{1}).Read(big)
	many = append(many, testimage.Entry{Name: "many/big", Data: big})
	last := []testimage.Entry{testimage.File("many/00000", "rewritten\n"), testimage.Whiteout("many/00001"), testimage.File("last", "top layer\n")}
	img, err := testimage.Build(testimage.BusyboxConfig(), base, many, last)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(big)
	return slowImage{img: img, bigSum: hex.EncodeToString(sum[:])}
}

// push pushes the image to ref over plain HTTP.
func (s slowImage) push(t *testing.T, ref string) {
	t.Helper()
	ctx := context.Background()
	store, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range append([]ocispec.Descriptor{s.img.Manifest, s.img.Config}, s.img.Layers...) {
		if err := content.WriteBlob(ctx, store, "build-"+d.Digest.Encoded(), bytes.NewReader(s.img.Blobs[d.Digest]), d); err != nil {
			t.Fatal(err)
		}
	}
	if err := distribution.Push(ctx, testResolver(t), store, ref, s.img.Manifest); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// TestUnpackDaemonKilled SIGKILLs berthd while a pull or an import applies
// a layer of many files, for each built-in snapshotter. Before the restart the
// daemon's records show the layer's temporary snapshot active and its
// chain ID not committed (the kill came in the middle), and nothing is
// left mounted. After the restart and a collection there is no lease, no
// snapshot (the interrupted one and the layer committed before it had
// only the transfer's lease), no folder in the snapshotter's root, and no
// image; the same transfer then completes and a container of the image
// sees the files of every layer.
func TestUnpackDaemonKilled(t *testing.T) {
	testutil.RequireRoot(t, "runc", "busybox")
	img := buildSlowImage(t)
	reg := testutil.StartRegistry(t, testutil.RegistryConfig{})
	ref := reg.Addr + "/test/slow-unpack:1"
	img.push(t, ref)
	var arch bytes.Buffer
	if err := img.img.WriteOCIArchive(&arch, ref); err != nil {
		t.Fatal(err)
	}
	chains := make([]string, len(img.img.DiffIDs))
	for i := range chains {
		chains[i] = identity.ChainID(img.img.DiffIDs[:i+1]).String()
	}
	slow := img.img.Layers[1]

	for _, sn := range []string{"overlayfs", "native"} {
		for _, how := range []string{"pull", "import"} {
			t.Run(sn+"/"+how, func(t *testing.T) {
				d := newDaemon(t)
				ns := "kill-" + how
				ctx := d.nsContext(ns)
				c := d.client(t, ns)
				unpacking := make(chan struct{}, 1)
				progress := func(p client.Progress) {
					if p.Ref == "unpack-"+slow.Digest.String() && p.Status == distribution.Status(unpack.StatusUnpacking) {
						select {
						case unpacking <- struct{}{}:
						default:
						}
					}
				}
				transfer := func(c *client.Client, progress func(client.Progress)) error {
					if how == "pull" {
						_, err := c.Pull(ctx, ref, client.WithPlainHTTP(), client.WithPullUnpack, client.WithPullSnapshotter(sn), client.WithPullProgress(progress))
						return err
					}
					_, err := c.Import(ctx, bytes.NewReader(arch.Bytes()), archive.WithUnpack(sn), archive.WithProgress(progress))
					return err
				}
				done := make(chan error, 1)
				go func() { done <- transfer(c, progress) }()

				// The middle layer under way: reported, and its
				// temporary snapshot filling.
				select {
				case <-unpacking:
				case err := <-done:
					t.Fatalf("the %s ended before the slow layer was unpacked: %v", how, err)
				case <-ctx.Done():
					t.Fatalf("no unpacking report for layer %s", slow.Digest)
				}
				sns := c.SnapshotService(sn)
				var seen snapshots.Usage
				eventually(t, 30*time.Second, "the slow layer's temporary snapshot filling", func() bool {
					key := activeChild(t, ctx, sns, chains[0])
					if key == "" {
						return false
					}
					u, err := sns.Usage(ctx, key)
					seen = u
					return err == nil && u.Inodes >= killAfterInodes
				})
				d.kill()
				t.Logf("killed with %d inodes of the layer's %d files applied", seen.Inodes, slowLayerFiles+1)
				if err := <-done; err == nil {
					t.Fatalf("the %s succeeded though berthd was killed", how)
				}

				// The kill came in the middle of the layer: the records
				// of the dead daemon say so.
				root := filepath.Join(d.root, "lib")
				if m := mountsUnder(root); len(m) != 0 {
					t.Errorf("mounted after the kill: %v", m)
				}
				killed := snapshotRecords(t, filepath.Join(root, "meta.db"), ns, sn)
				if _, ok := killed[chains[1]]; ok {
					t.Fatalf("layer %s was committed before the kill: the test killed too late (records %v)", chains[1], killed)
				}
				if !slices.ContainsFunc(slices.Collect(maps.Values(killed)), func(i snapshots.Info) bool {
					return i.Kind == snapshots.KindActive && i.Parent == chains[0] && strings.HasPrefix(i.Name, "unpack-")
				}) {
					t.Fatalf("no temporary snapshot of layer %s after the kill: %v", chains[1], killed)
				}

				d.start()
				c = d.client(t, ns)
				sns = c.SnapshotService(sn)
				if _, err := c.GarbageCollect(ctx); err != nil {
					t.Fatal(err)
				}
				if ls, err := c.LeasesService().List(ctx); err != nil || len(ls) != 0 {
					t.Errorf("leases after the restart and a collection: %v, %v", ls, err)
				}
				if left := walkSnapshots(t, ctx, sns); len(left) != 0 {
					t.Errorf("snapshots after the restart and a collection: %v", left)
				}
				if dirs := snapshotFolders(t, root, sn); len(dirs) != 0 {
					t.Errorf("folders in the %s root after the restart and a collection: %v", sn, dirs)
				}
				if imgs, err := c.ListImages(ctx); err != nil || len(imgs) != 0 {
					t.Errorf("images after the interrupted %s: %v, %v", how, imgs, err)
				}

				// The same transfer completes: each layer committed
				// once, under its chain ID, one folder each.
				if err := transfer(c, nil); err != nil {
					t.Fatalf("%s after the restart: %v", how, err)
				}
				left := walkSnapshots(t, ctx, sns)
				for _, chain := range chains {
					if i, ok := left[chain]; !ok || i.Kind != snapshots.KindCommitted {
						t.Errorf("layer %s after the second %s: %+v (present %v)", chain, how, i, ok)
					}
				}
				if len(left) != len(chains) {
					t.Errorf("snapshots after the second %s: %v, want the %d layers", how, left, len(chains))
				}
				if dirs := snapshotFolders(t, root, sn); len(dirs) != len(chains) {
					t.Errorf("folders in the %s root: %v, want one per layer (%d)", sn, dirs, len(chains))
				}

				// A container sees every layer: the many files, the
				// large one whole, and the top layer's changes.
				image, err := c.GetImage(ctx, ref)
				if err != nil {
					t.Fatal(err)
				}
				out, code := runFromImage(t, ctx, d, c, "check", image, sn, true, "sh", "-c",
					fmt.Sprintf("cat /last /many/00000; head -n1 /many/00002; head -n1 /many/%05d; ls /many | wc -l; test -e /many/00001 || echo gone; sha256sum /many/big", slowLayerFiles-1))
				want := fmt.Sprintf("top layer\nrewritten\nmany/00002\nmany/%05d\n%d\ngone\n%s  /many/big\n", slowLayerFiles-1, slowLayerFiles, img.bigSum)
				if code != 0 || out != want {
					t.Errorf("container: exit %d, output:\n%s\nwant:\n%s", code, out, want)
				}
			})
		}
	}
}

// activeChild returns the key of an active snapshot on parent named as
// an unpack's temporary snapshot, "" when there is none.
func activeChild(t *testing.T, ctx context.Context, sn snapshots.Snapshotter, parent string) string {
	t.Helper()
	for _, i := range walkSnapshots(t, ctx, sn) {
		if i.Kind == snapshots.KindActive && i.Parent == parent && strings.HasPrefix(i.Name, "unpack-") {
			return i.Name
		}
	}
	return ""
}

// walkSnapshots returns the snapshots of sn in the namespace of ctx, by
// name.
func walkSnapshots(t *testing.T, ctx context.Context, sn snapshots.Snapshotter) map[string]snapshots.Info {
	t.Helper()
	out := map[string]snapshots.Info{}
	if err := sn.Walk(ctx, func(_ context.Context, i snapshots.Info) error {
		out[i.Name] = i
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// snapshotRecords reads, from the metadata DB of a daemon that is not
// running, the records of snapshotter sn in namespace ns, by name.
func snapshotRecords(t *testing.T, path, ns, sn string) map[string]snapshots.Info {
	t.Helper()
	db, err := metadata.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Walk reads the records only; the snapshotter underneath is not
	// called.
	return walkSnapshots(t, namespaces.WithNamespace(context.Background(), ns), db.Snapshotter(sn, nil))
}

// snapshotFolders returns the entries of the folder of snapshotter sn
// that holds one folder per snapshot (and, while one is made or removed,
// new-* and rm-* folders), under a daemon root.
func snapshotFolders(t *testing.T, root, sn string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, "snapshots", sn, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
