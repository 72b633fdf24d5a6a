package unpack_test

import (
	"context"
	"math/rand/v2"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/diff"
	"github.com/berthrt/berth/internal/testimage"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/snapshots"
	"github.com/berthrt/berth/storage/snapshots/overlay"
	"github.com/berthrt/berth/unpack"
)

// BenchmarkUnpackOverlay unpacks an image of 4 gzip'd layers of one 8 MiB
// random file each (bench/unpackbench's big image, smaller) from a
// content store into overlayfs through the metadata store, as berthd
// does, one layer after the other and with layers applied ahead; the
// snapshots are removed between rounds (not timed).
func BenchmarkUnpackOverlay(b *testing.B) {
	testutil.RequireRoot(b)
	const layers, size = 4, 8 << 20
	rng := rand.NewChaCha8([32]byte{1})
	var ls [][]testimage.Entry
	for range layers {
		data := make([]byte, size)
		rng.Read(data)
		ls = append(ls, []testimage.Entry{{Name: "data", Data: data}})
	}
	img, err := testimage.Build(ocispec.ImageConfig{}, ls...)
	if err != nil {
		b.Fatal(err)
	}
	e := newOverlayEnv(b)
	e.write(b, img)
	resolved, err := unpack.Resolve(e.ctx, e.content, img.Manifest, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cs, sn := e.ctx, e.content, e.sn
	for _, bc := range []struct {
		name  string
		ahead int
	}{{"in-order", 0}, {"ahead", 2}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(layers * size)
			for range b.N {
				if _, err := unpack.Unpack(ctx, resolved, unpack.Options{Content: cs, Snapshotter: sn, SnapshotterName: overlay.Name, Applier: diff.NewApplier(b.TempDir()), Leases: e.leases, Ahead: bc.ahead}); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				removeAll(b, ctx, sn)
				b.StartTimer()
			}
		})
	}
}

// removeAll removes every snapshot, children before parents.
func removeAll(b *testing.B, ctx context.Context, sn snapshots.Snapshotter) {
	for {
		var infos []snapshots.Info
		sn.Walk(ctx, func(_ context.Context, i snapshots.Info) error { infos = append(infos, i); return nil })
		if len(infos) == 0 {
			return
		}
		removed := 0
		for _, i := range infos {
			if sn.Remove(ctx, i.Name) == nil {
				removed++
			}
		}
		if removed == 0 {
			b.Fatalf("cannot remove snapshots %v", infos)
		}
	}
}
