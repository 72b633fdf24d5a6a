package archive_test

import (
	"archive/tar"
	"bytes"
	"context"
	"testing"

	"github.com/berthrt/berth/archive"
)

// FuzzApply: any input either applies or fails; it never panics and never
// touches anything outside root.
func FuzzApply(f *testing.F) {
	for _, entries := range [][]ent{
		{file("../../etc/x", "x")},
		{symlink("evil", "/tmp/outside"), file("evil/file", "x")},
		{symlink("a", "../.."), symlink("b", "a/outside"), file("b/sentinel", "x")},
		{dir("d/"), symlink("d", "../outside"), file("d/f", "x"), hardlink("l", "d/f")},
		{file("d/.wh..wh..opq", ""), file(".wh.d", ""), file(".wh...", "")},
		{{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "c", Devmajor: 1, Devminor: 3}}},
	} {
		f.Add(tarOf(f, entries...))
	}
	for _, l := range layers(f) {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := newSandbox(t)
		for _, c := range []archive.Convention{archive.Plain, archive.Overlay} {
			archive.Apply(context.Background(), s.root, bytes.NewReader(data), archive.WithConvention(c), archive.WithLimits(archive.Limits{MaxEntries: 256, MaxSparseSize: 1 << 20}))
		}
		s.check(t)
	})
}
