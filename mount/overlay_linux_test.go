package mount

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCompactLowerdir(t *testing.T) {
	tests := []struct {
		name string
		opts []string
		dir  string
		want []string // nil: nothing to compact
	}{
		{"siblings", []string{"index=off", "lowerdir=/r/s/2/fs:/r/s/1/fs", "upperdir=/r/s/3/fs"},
			"/r/s", []string{"index=off", "lowerdir=2/fs:1/fs", "upperdir=/r/s/3/fs"}},
		{"cleaned", []string{"lowerdir=/r/s//2/fs/:/r/s/./1/fs"}, "/r/s", []string{"lowerdir=2/fs:1/fs"}},
		{"prefix is not a folder", []string{"lowerdir=/r/ab/fs:/r/a/fs"}, "/r", []string{"lowerdir=ab/fs:a/fs"}},
		{"one lower", []string{"lowerdir=/r/s/1/fs"}, "", nil},
		{"only the root shared", []string{"lowerdir=/a/fs:/b/fs"}, "", nil},
		{"relative", []string{"lowerdir=a/fs:/b/fs"}, "", nil},
		{"escaped", []string{`lowerdir=/r/a\:b:/r/c`}, "", nil},
		{"no lowerdir", []string{"upperdir=/u"}, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, got, ok := compactLowerdir(tt.opts)
			if ok != (tt.want != nil) || dir != tt.dir || strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("compactLowerdir(%q) = %q, %q, %v; want %q, %q", tt.opts, dir, got, ok, tt.dir, tt.want)
			}
		})
	}
}

func TestOverlayLongerThanAPage(t *testing.T) {
	requireRoot(t)
	// Lower folders with long names, together far beyond a page.
	base := filepath.Join(t.TempDir(), strings.Repeat("long-folder-name-", 6))
	const n = 120
	var lowers []string
	for i := range n {
		l := filepath.Join(base, fmt.Sprintf("layer-%03d", i), "fs")
		if err := os.MkdirAll(l, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(l, fmt.Sprintf("f%03d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		lowers = append(lowers, l)
	}
	upper, work := filepath.Join(base, "upper"), filepath.Join(base, "work")
	for _, d := range []string{upper, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	m := Mount{Type: "overlay", Source: "overlay", Options: []string{
		"workdir=" + work, "upperdir=" + upper, "lowerdir=" + strings.Join(lowers, ":"),
	}}
	if _, _, data := ParseOptions(m.Options); len(data) < 2*os.Getpagesize() {
		t.Fatalf("data is only %d bytes", len(data))
	}
	wd, _ := os.Getwd()
	merged := mountDir(t)
	if err := m.Mount(merged); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(merged)
	if err != nil || len(entries) != n {
		t.Errorf("merged holds %d entries (%v), want %d", len(entries), err, n)
	}
	if now, _ := os.Getwd(); now != wd {
		t.Errorf("working folder changed from %s to %s", wd, now)
	}
}
