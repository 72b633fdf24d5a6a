package cri

import (
	"context"
	"encoding/base64"
	"slices"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/errdefs"
)

func TestNormalizeRef(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"busybox", "docker.io/library/busybox:latest"},
		{"busybox:1.36", "docker.io/library/busybox:1.36"},
		{"127.0.0.1:5000/a/b", "127.0.0.1:5000/a/b:latest"},
		{"127.0.0.1:5000/a/b:t@sha256:" + strings.Repeat("a", 64), "127.0.0.1:5000/a/b@sha256:" + strings.Repeat("a", 64)},
	} {
		got, err := normalizeRef(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("normalizeRef(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "Busybox", "a b", "busybox@sha256:12"} {
		if _, err := normalizeRef(bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("normalizeRef(%q): %v, want invalid argument", bad, err)
		}
	}
}

func TestImageID(t *testing.T) {
	hex := strings.Repeat("ab", 32)
	for in, want := range map[string]string{"sha256:" + hex: "sha256:" + hex, hex: "sha256:" + hex, "busybox": "", hex[:12]: ""} {
		got, ok := imageID(in)
		if got != want || ok != (want != "") {
			t.Errorf("imageID(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestCredentials(t *testing.T) {
	for _, tc := range []struct {
		auth       *runtimeapi.AuthConfig
		user, pass string
		ok         bool
	}{
		{&runtimeapi.AuthConfig{Username: "u", Password: "p"}, "u", "p", true},
		{&runtimeapi.AuthConfig{Auth: base64.StdEncoding.EncodeToString([]byte("u:p:q"))}, "u", "p:q", true},
		{&runtimeapi.AuthConfig{IdentityToken: "tok"}, "", "tok", true},
		{&runtimeapi.AuthConfig{RegistryToken: "tok"}, "", "tok", true},
		{&runtimeapi.AuthConfig{}, "", "", true},
		{&runtimeapi.AuthConfig{Auth: "!!"}, "", "", false},
		{&runtimeapi.AuthConfig{Auth: base64.StdEncoding.EncodeToString([]byte("nocolon"))}, "", "", false},
	} {
		user, pass, err := credentials(tc.auth)
		if (err == nil) != tc.ok || user != tc.user || pass != tc.pass {
			t.Errorf("credentials(%v) = %q, %q, %v", tc.auth, user, pass, err)
		}
	}
}

func TestResolvConf(t *testing.T) {
	got, err := resolvConf(&runtimeapi.DNSConfig{Servers: []string{"10.0.0.10", "10.0.0.11"}, Searches: []string{"a.svc", "svc"}, Options: []string{"ndots:5"}})
	want := "nameserver 10.0.0.10\nnameserver 10.0.0.11\nsearch a.svc svc\noptions ndots:5\n"
	if err != nil || string(got) != want {
		t.Errorf("resolv.conf:\n%s%v", got, err)
	}
	for _, bad := range []*runtimeapi.DNSConfig{
		{Servers: []string{"10.0.0.1\nnameserver 1.2.3.4"}},
		{Searches: []string{"a b"}},
		{Options: []string{""}},
		{Servers: make([]string, dnsMax+1)},
	} {
		if _, err := resolvConf(bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("resolvConf(%v): %v, want invalid argument", bad, err)
		}
	}
}

func TestSignalByName(t *testing.T) {
	for in, want := range map[string]syscall.Signal{"SIGTERM": syscall.SIGTERM, "term": syscall.SIGTERM, "SIGNAL_SIGKILL": syscall.SIGKILL, "9": syscall.SIGKILL, "SIGRTMIN": 0, "nope": 0, "0": 0} {
		got, ok := signalByName(in)
		if got != want || ok != (want != 0) {
			t.Errorf("signalByName(%q) = %v, %v; want %v", in, got, ok, want)
		}
	}
}

func TestWithProcessArgs(t *testing.T) {
	entry, cmd := []string{"/entry"}, []string{"default"}
	for _, tc := range []struct {
		command, args, want []string
	}{
		{nil, nil, []string{"/entry", "default"}},
		{nil, []string{"a"}, []string{"/entry", "a"}},
		{[]string{"/bin/sh"}, nil, []string{"/bin/sh"}},
		{[]string{"/bin/sh"}, []string{"-c", "x"}, []string{"/bin/sh", "-c", "x"}},
	} {
		s := &specs.Spec{Process: &specs.Process{}}
		err := withProcessArgs(&runtimeapi.ContainerConfig{Command: tc.command, Args: tc.args}, entry, cmd)(context.Background(), s)
		if err != nil || !slices.Equal(s.Process.Args, tc.want) {
			t.Errorf("command %v args %v: %v %v, want %v", tc.command, tc.args, s.Process.Args, err, tc.want)
		}
	}
	s := &specs.Spec{Process: &specs.Process{}}
	if err := withProcessArgs(&runtimeapi.ContainerConfig{}, nil, nil)(context.Background(), s); !errdefs.IsInvalidArgument(err) {
		t.Errorf("no command anywhere: %v", err)
	}
}

func TestByID(t *testing.T) {
	a, b := 1, 2
	m := map[string]*int{"abc1": &a, "abd2": &b}
	if v, err := byID(m, "abc", "x"); err != nil || v != &a {
		t.Errorf("unique prefix: %v %v", v, err)
	}
	if _, err := byID(m, "ab", "x"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("ambiguous prefix: %v", err)
	}
	if _, err := byID(m, "zz", "x"); !errdefs.IsNotFound(err) {
		t.Errorf("missing: %v", err)
	}
	if _, err := byID(m, "", "x"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("empty: %v", err)
	}
}
