package fsstore

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// writeLayerTree writes a tree shaped like an unpacked layer: files files
// of a few KiB in nested folders, about size bytes in all, left dirty in
// the page cache.
func writeLayerTree(b *testing.B, dir string, files, size int) {
	b.Helper()
	buf := make([]byte, size/files)
	for i := range files {
		d := filepath.Join(dir, fmt.Sprintf("d%d/e%d", i%16, i%5))
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%d", i)), buf, 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// fsyncTree is the alternative to syncFS: fsync of every file and folder.
func fsyncTree(root string) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !(d.IsDir() || d.Type().IsRegular()) {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	})
}

// BenchmarkLayerSync compares the two ways to make an unpacked layer
// durable before its commit (syncFS's comment gives the figures):
//
//	go test -run x -bench LayerSync -benchtime 5x ./storage/snapshots/internal/fsstore
func BenchmarkLayerSync(b *testing.B) {
	for _, shape := range []struct{ files, size int }{{400, 2 << 20}, {4000, 40 << 20}} {
		for name, sync := range map[string]func(string) error{"syncfs": syncFS, "fsync-each": fsyncTree} {
			b.Run(fmt.Sprintf("%s/%dfiles", name, shape.files), func(b *testing.B) {
				for b.Loop() {
					b.StopTimer()
					dir := b.TempDir()
					writeLayerTree(b, dir, shape.files, shape.size)
					b.StartTimer()
					if err := sync(dir); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
