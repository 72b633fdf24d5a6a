package distribution_test

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/berthrt/berth/distribution"
)

// benchLayer is the size of the incompressible layer the benchmarks
// fetch from a loopback registry.
const benchLayer = 50 << 20

// pushBenchImage pushes an image with one benchLayer layer.
func pushBenchImage(b *testing.B) (string, *distribution.Resolver) {
	b.Helper()
	reg := startRegistry(b)
	r := resolver(b, distribution.ResolverOptions{})
	im := newImage(b, randomLayer(b, benchLayer))
	ref := reg.Addr + "/bench/big:1"
	push(b, r, im, ref)
	return ref, r
}

// BenchmarkPull pulls the image into a fresh content store each time.
func BenchmarkPull(b *testing.B) {
	ref, r := pushBenchImage(b)
	b.SetBytes(benchLayer)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		store := newStore(b)
		b.StartTimer()
		if _, err := distribution.Pull(context.Background(), r, store, ref); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSkopeoCopy copies the same image to an OCI layout with
// skopeo, for comparison.
func BenchmarkSkopeoCopy(b *testing.B) {
	ref, _ := pushBenchImage(b)
	b.SetBytes(benchLayer)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := filepath.Join(b.TempDir(), strconv.Itoa(i))
		b.StartTimer()
		skopeo(b, "copy", "--src-tls-verify=false", "docker://"+ref, "oci:"+dir+":big")
	}
}
