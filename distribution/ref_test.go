package distribution_test

import (
	"testing"

	"github.com/berthrt/berth/distribution"
	"github.com/berthrt/berth/errdefs"
)

const someDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParseRef(t *testing.T) {
	tests := []struct {
		in, want, domain, path, object string
	}{
		{"busybox", "docker.io/library/busybox:latest", "docker.io", "library/busybox", "latest"},
		{"busybox:1.36", "docker.io/library/busybox:1.36", "docker.io", "library/busybox", "1.36"},
		{"docker.io/busybox", "docker.io/library/busybox:latest", "docker.io", "library/busybox", "latest"},
		{"user/app", "docker.io/user/app:latest", "docker.io", "user/app", "latest"},
		{"host:5000/a/b:tag", "host:5000/a/b:tag", "host:5000", "a/b", "tag"},
		{"localhost/app", "localhost/app:latest", "localhost", "app", "latest"},
		{"127.0.0.1:5000/app@" + someDigest, "127.0.0.1:5000/app@" + someDigest, "127.0.0.1:5000", "app", someDigest},
		{"ghcr.io/o/r:t@" + someDigest, "ghcr.io/o/r:t@" + someDigest, "ghcr.io", "o/r", someDigest},
	}
	for _, tt := range tests {
		r, err := distribution.ParseRef(tt.in)
		if err != nil {
			t.Fatalf("ParseRef(%q): %v", tt.in, err)
		}
		if r.String() != tt.want || r.Domain != tt.domain || r.Path != tt.path || r.Object() != tt.object {
			t.Errorf("ParseRef(%q) = %+v (%s, object %s), want %s", tt.in, r, r, r.Object(), tt.want)
		}
	}
}

func TestParseRefRefused(t *testing.T) {
	for _, in := range []string{"", "docker.io/UPPER/case", "Busybox", "a b", "host:5000/app:bad tag", "app@sha256:short", "app@md5:0123", ":tag", "/app", "app//x"} {
		if r, err := distribution.ParseRef(in); !errdefs.IsInvalidArgument(err) {
			t.Errorf("ParseRef(%q) = %v, %v; want invalid argument", in, r, err)
		}
	}
}

func FuzzParseRef(f *testing.F) {
	for _, s := range []string{"busybox", "host:5000/a/b:tag", "a@" + someDigest, "x/y:z@" + someDigest} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := distribution.ParseRef(s)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("ParseRef(%q): %v is not invalid argument", s, err)
			}
			return
		}
		// The normal form is a fixed point.
		again, err := distribution.ParseRef(r.String())
		if err != nil || again != r {
			t.Fatalf("ParseRef(%q) = %+v, but its String %q parses to %+v, %v", s, r, r.String(), again, err)
		}
		if r.Object() == "" {
			t.Fatalf("ParseRef(%q): no tag or digest", s)
		}
	})
}

func TestParsePlatform(t *testing.T) {
	for in, want := range map[string]string{
		"linux/amd64":    "linux/amd64",
		"Linux/x86_64":   "linux/amd64",
		"linux/aarch64":  "linux/arm64",
		"linux/arm64/v8": "linux/arm64",
		"linux/armhf":    "linux/arm/v7",
		"linux/arm/v6":   "linux/arm/v6",
	} {
		p, err := distribution.ParsePlatform(in)
		if err != nil || distribution.FormatPlatform(p) != want {
			t.Errorf("ParsePlatform(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	for _, in := range []string{"", "linux", "linux/", "/amd64", "linux/arm/v7/x", "linux/arm/"} {
		if _, err := distribution.ParsePlatform(in); !errdefs.IsInvalidArgument(err) {
			t.Errorf("ParsePlatform(%q): %v, want invalid argument", in, err)
		}
	}
}
