package images_test

import (
	"bytes"
	"io"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/images"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// FuzzDecodeChildren: any bytes decode to children or an error, never a
// panic, and every child returned has a valid digest and size.
func FuzzDecodeChildren(f *testing.F) {
	f.Add(`{"schemaVersion":2,"config":{"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}}`, true)
	f.Add(`{"manifests":[{"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}]}`, false)
	f.Fuzz(func(t *testing.T, data string, manifest bool) {
		mt := ocispec.MediaTypeImageIndex
		if manifest {
			mt = ocispec.MediaTypeImageManifest
		}
		children, err := images.DecodeChildren(ocispec.Descriptor{MediaType: mt}, []byte(data))
		if err != nil {
			return
		}
		for _, c := range children {
			if images.CheckDescriptor(c) != nil {
				t.Fatalf("child %+v returned without error", c)
			}
		}
	})
}
