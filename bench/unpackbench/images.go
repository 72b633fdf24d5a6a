package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/distribution"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/internal/testimage"
	"github.com/berthrt/berth/storage/content/local"
)

// image is one image of the benchmark, pushed to the registry.
type image struct {
	name  string // for the table
	ref   string
	bytes int64 // the layers' uncompressed bytes (what an unpack writes)
	files int   // regular files in its layers
	img   *testimage.Image
}

// bigImage has n layers, each a tar of one file of size random
// (incompressible) bytes. testimage gzips layers with compress/gzip at
// its default level, as docker and containerd push them.
func bigImage(n, size int) (*testimage.Image, int64, error) {
	rng := rand.NewChaCha8([32]byte{1})
	var layers [][]testimage.Entry
	for i := range n {
		data := make([]byte, size)
		rng.Read(data)
		layers = append(layers, []testimage.Entry{{Name: fmt.Sprintf("layer%d/data", i), Data: data}})
	}
	img, err := testimage.Build(ocispec.ImageConfig{}, layers...)
	return img, int64(n) * int64(size), err
}

// smallImage has one layer of n files of 1 to 4 KiB of random bytes, 50
// to a folder, in folders two deep (d00/s00/f000).
func smallImage(n int) (*testimage.Image, int64, error) {
	const perDir, perTop = 50, 20
	rng := rand.NewChaCha8([32]byte{2})
	var entries []testimage.Entry
	var total int64
	for i := range n {
		dir := fmt.Sprintf("d%02d/s%02d", i/perDir/perTop, i/perDir%perTop)
		if i%(perDir*perTop) == 0 {
			entries = append(entries, testimage.Dir(filepath.Dir(dir)))
		}
		if i%perDir == 0 {
			entries = append(entries, testimage.Dir(dir))
		}
		data := make([]byte, 1<<10+int(rng.Uint64()%(3<<10)))
		rng.Read(data)
		total += int64(len(data))
		entries = append(entries, testimage.Entry{Name: fmt.Sprintf("%s/f%03d", dir, i%perDir), Data: data})
	}
	img, err := testimage.Build(ocispec.ImageConfig{}, entries)
	return img, total, err
}

// push writes img's blobs into a content store under dir and pushes img
// to ref; the store is removed again.
func push(ctx context.Context, dir, ref string, img *testimage.Image) error {
	build := filepath.Join(dir, "build")
	defer os.RemoveAll(build)
	store, err := local.NewStore(build)
	if err != nil {
		return err
	}
	for dgst, data := range img.Blobs {
		d := ocispec.Descriptor{Digest: dgst, Size: int64(len(data))}
		if err := content.WriteBlob(ctx, store, "build-"+dgst.Encoded(), bytes.NewReader(data), d); err != nil && !errdefs.IsAlreadyExists(err) {
			return err
		}
	}
	r, err := distribution.NewResolver(distribution.ResolverOptions{PlainHTTP: true, DockerConfig: filepath.Join(dir, "no-config.json")})
	if err != nil {
		return err
	}
	return distribution.Push(ctx, r, store, ref, img.Manifest)
}
