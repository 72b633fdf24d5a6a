package main

import (
	"testing"

	"github.com/berthrt/berth/distribution"
)

// refCases are references of every shape, well formed and not; the
// normalised form (or the refusal) of each must be
// distribution.ParseRef's, which github.com/distribution/reference does.
var refCases = []string{
	"busybox", "busybox:1.36", "library/busybox", "docker.io/busybox", "index.docker.io/busybox",
	"docker.io/library/busybox:latest", "user/app", "a/b/c/d:tag",
	"localhost/app", "localhost:5000/app:v1", "LOCALHOST/app", "Example.com/app", "host:5000/a/b",
	"127.0.0.1:5000/app", "[::1]:5000/app", "[::1]/app", "[fe80::1%eth0]/app", "[]/app", "[::1]x/app",
	"registry.example/ns/app@sha256:" + hex64, "app:1@sha256:" + hex64, "app@sha256:" + hex64,
	"app@sha256:" + hex64[:63], "app@SHA256:" + hex64, "app@md5:0123456789abcdef0123456789abcdef",
	hex64, "docker.io/" + hex64, "Busybox", "busybox:Tag_1.x-y", "busybox:.bad", "busybox:",
	"busybox:" + string(make([]byte, 129)), "a__b/c", "a___b/c", "a--b/c", "a._b/c", "-a/b", "a-/b",
	"a..b/c", "a__b.c/d", "host:/app", "host:50x0/app", "ho_st.com/app", "-host.com/app", "host-.com/app",
	"", "/", "app/", "/app", "a//b", ":tag", "@sha256:" + hex64, "app:tag:tag", "app@",
	"UPPER", "up/Per", "host.com/Upper", "ab.c/" + string(repeat('a', 250)), "docker.io/" + string(repeat('a', 240)),
}

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func repeat(b byte, n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}

func TestNormalizeRef(t *testing.T) {
	for _, s := range refCases {
		checkNormalizeRef(t, s)
	}
}

func FuzzNormalizeRef(f *testing.F) {
	for _, s := range refCases {
		f.Add(s)
	}
	f.Fuzz(checkNormalizeRef)
}

func checkNormalizeRef(t *testing.T, s string) {
	got, err := normalizeRef(s)
	want, werr := distribution.ParseRef(s)
	switch {
	case werr != nil && err == nil:
		t.Errorf("normalizeRef(%q) = %q, distribution/reference refuses it: %v", s, got, werr)
	case werr == nil && err != nil:
		t.Errorf("normalizeRef(%q): %v, distribution/reference gives %q", s, err, want)
	case werr == nil && got != want.String():
		t.Errorf("normalizeRef(%q) = %q, distribution/reference gives %q", s, got, want)
	}
}
