package archive_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/berthrt/berth/archive"
	"github.com/berthrt/berth/internal/testutil"
)

// BenchmarkApplySmallFiles applies a layer of 20,000 files of 1 to 4 KiB,
// 50 to a folder in folders two deep (the small-files image of
// bench/unpackbench), from memory onto an empty folder: what Apply costs
// per entry, in system calls mostly, without workers and with two.
func BenchmarkApplySmallFiles(b *testing.B) {
	testutil.RequireRoot(b)
	const files, perDir, perTop = 20000, 50, 20
	rng := rand.New(rand.NewChaCha8([32]byte{2}))
	var entries []ent
	for i := range files {
		d := fmt.Sprintf("d%02d/s%02d/", i/perDir/perTop, i/perDir%perTop)
		if i%(perDir*perTop) == 0 {
			entries = append(entries, dir(d[:4]))
		}
		if i%perDir == 0 {
			entries = append(entries, dir(d))
		}
		body := make([]byte, 1<<10+rng.IntN(3<<10))
		for j := range body {
			body[j] = byte(rng.Uint32())
		}
		entries = append(entries, file(fmt.Sprintf("%sf%03d", d, i%perDir), string(body)))
	}
	layer := tarOf(b, entries...)
	for _, w := range []int{0, 2} {
		b.Run(fmt.Sprintf("workers=%d", w), func(b *testing.B) {
			defer archive.SetWorkers(w)()
			benchApply(b, layer, files)
		})
	}
}

func benchApply(b *testing.B, layer []byte, files int) {
	base := b.TempDir()
	b.SetBytes(int64(len(layer)))
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		root := fmt.Sprintf("%s/%d", base, i)
		if err := os.Mkdir(root, 0o755); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := archive.Apply(context.Background(), root, bytes.NewReader(layer)); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := os.RemoveAll(root); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(files)/(b.Elapsed().Seconds()/float64(b.N)), "files/s")
}
