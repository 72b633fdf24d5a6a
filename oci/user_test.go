package oci

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthrt/berth/errdefs"
)

const (
	testPasswd = `root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1::/:/bin/false
app:x:1000:1000:App:/home/app:/bin/sh
+nis
broken
www:x:33:33::/var/www:/bin/false
`
	testGroup = `root:x:0:
wheel:x:10:app,root
app:x:1000:
staff:x:50:app
www:x:33:www,app
`
)

// userRoot returns a root filesystem folder with etc/passwd and etc/group.
func userRoot(t *testing.T, passwd, group string) string {
	t.Helper()
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"passwd": passwd, "group": group} {
		if data == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(root, "etc", name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestWithUser(t *testing.T) {
	root := userRoot(t, testPasswd, testGroup)
	tests := []struct {
		user string
		want specs.User
	}{
		{"app", specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{10, 33, 50}}},
		{"1000", specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{10, 33, 50}}},
		{"app:staff", specs.User{UID: 1000, GID: 50, AdditionalGids: []uint32{10, 33}}},
		{"app:7", specs.User{UID: 1000, GID: 7, AdditionalGids: []uint32{10, 33, 50}}},
		{"1000:www", specs.User{UID: 1000, GID: 33, AdditionalGids: []uint32{10, 50}}},
		{"www", specs.User{UID: 33, GID: 33}},
		{"daemon", specs.User{UID: 1, GID: 1}},
		{"4242", specs.User{UID: 4242, GID: 0}}, // not listed: group 0
		{"4242:4343", specs.User{UID: 4242, GID: 4343}},
		{"0", specs.User{UID: 0, GID: 0, AdditionalGids: []uint32{10}}},
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			s, err := GenerateSpec(context.Background(), "ci", "x", WithRootFSPath(root), WithUser(tt.user))
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Process.User; got.UID != tt.want.UID || got.GID != tt.want.GID || !slices.Equal(got.AdditionalGids, tt.want.AdditionalGids) {
				t.Errorf("user %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestWithUserErrors(t *testing.T) {
	root := userRoot(t, testPasswd, testGroup)
	noFiles := userRoot(t, "", "")
	tests := []struct {
		name, root, user string
		class            error
		want             string
	}{
		{"unknown user", root, "nobody", errdefs.ErrNotFound, `no user "nobody"`},
		{"unknown group", root, "app:nogroup", errdefs.ErrNotFound, `no group "nogroup"`},
		{"name without passwd", noFiles, "app", errdefs.ErrNotFound, "/etc/passwd"},
		{"group without group file", noFiles, "0:wheel", errdefs.ErrNotFound, "/etc/group"},
		{"empty", root, "", errdefs.ErrInvalidArgument, `user ""`},
		{"empty group", root, "app:", errdefs.ErrInvalidArgument, `user "app:"`},
		{"two colons", root, "a:b:c", errdefs.ErrInvalidArgument, `user "a:b:c"`},
		{"name without a root", "", "app", errdefs.ErrFailedPrecondition, "root filesystem"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := []SpecOpts{WithUser(tt.user)}
			if tt.root != "" {
				opts = append([]SpecOpts{WithRootFSPath(tt.root)}, opts...)
			}
			_, err := GenerateSpec(context.Background(), "ci", "x", opts...)
			if !errors.Is(err, tt.class) || !strings.Contains(fmtErr(err), tt.want) {
				t.Errorf("error %v, want %v naming %q", err, tt.class, tt.want)
			}
		})
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// WithUIDGID after WithUser or an image's user drops the groups that user
// had: a process of uid 1000 must not keep root's or wheel's group
// (CVE-2023-25173).
func TestWithUIDGIDResetsGroups(t *testing.T) {
	root := userRoot(t, testPasswd, testGroup)
	for name, earlier := range map[string]SpecOpts{
		"user":         WithUser("app"),
		"image config": WithImageConfigSpec(ocispec.ImageConfig{User: "root"}),
	} {
		t.Run(name, func(t *testing.T) {
			s, err := GenerateSpec(context.Background(), "ci", "x", WithRootFSPath(root), earlier)
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Process.User.AdditionalGids) == 0 {
				t.Fatalf("the earlier option set no groups (%+v): the test proves nothing", s.Process.User)
			}
			if err := WithUIDGID(1000, 1000)(context.Background(), s); err != nil {
				t.Fatal(err)
			}
			if got := s.Process.User; got.UID != 1000 || got.GID != 1000 || len(got.AdditionalGids) > 0 {
				t.Errorf("after WithUIDGID(1000, 1000): %+v, want uid 1000, gid 1000 and no supplementary groups", got)
			}
		})
	}
}

// Numeric users need no root filesystem; a uid alone then has group 0.
func TestWithUserNumericWithoutRoot(t *testing.T) {
	for user, want := range map[string]specs.User{"7": {UID: 7}, "7:8": {UID: 7, GID: 8}} {
		s, err := GenerateSpec(context.Background(), "ci", "x", WithUser(user))
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Process.User; got.UID != want.UID || got.GID != want.GID || len(got.AdditionalGids) > 0 {
			t.Errorf("user %q: %+v, want %+v", user, got, want)
		}
	}
}

// The context's root filesystem serves a spec whose root is relative (a
// bundle's "rootfs"), and is asked only when a name needs it.
func TestWithUserContextRootFS(t *testing.T) {
	root := userRoot(t, testPasswd, testGroup)
	calls := 0
	ctx := ContextWithRootFS(context.Background(), func(context.Context) (string, error) {
		calls++
		return root, nil
	})
	s, err := GenerateSpec(ctx, "ci", "x", WithUser("5:5"), WithUser("www"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Process.User.UID != 33 || s.Root.Path != defaultRootPath || calls != 1 {
		t.Errorf("user %+v, root %q, rootfs asked %d times", s.Process.User, s.Root.Path, calls)
	}
	failing := ContextWithRootFS(context.Background(), func(context.Context) (string, error) {
		return "", errors.New("mount refused")
	})
	if _, err := GenerateSpec(failing, "ci", "x", WithUser("www")); err == nil || !strings.Contains(err.Error(), "mount refused") {
		t.Errorf("a failing rootfs: %v", err)
	}
}

// The files are read inside the root: a symlink that climbs out, or an
// absolute one, resolves under the root, never to the host's file; a FIFO
// is refused rather than read (which would block).
func TestWithUserStaysInRoot(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "passwd"), []byte("evil:x:0:0::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"../../../../../../" + outside + "/passwd", outside + "/passwd"} {
		root := userRoot(t, "", "")
		if err := os.Symlink(target, filepath.Join(root, "etc", "passwd")); err != nil {
			t.Fatal(err)
		}
		_, err := GenerateSpec(context.Background(), "ci", "x", WithRootFSPath(root), WithUser("evil"))
		if !errdefs.IsNotFound(err) {
			t.Errorf("passwd a symlink to %s: %v, want not found", target, err)
		}
	}
	root := userRoot(t, "", "")
	if err := syscall.Mkfifo(filepath.Join(root, "etc", "passwd"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := GenerateSpec(context.Background(), "ci", "x", WithRootFSPath(root), WithUser("app"))
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("passwd a FIFO: %v", err)
	}
}

func TestImageConfigUserByName(t *testing.T) {
	root := userRoot(t, testPasswd, testGroup)
	s, err := GenerateSpec(context.Background(), "ci", "x", WithRootFSPath(root), WithImageConfigSpec(ocispec.ImageConfig{User: "www"}))
	if err != nil {
		t.Fatal(err)
	}
	if s.Process.User.UID != 33 || s.Process.User.GID != 33 {
		t.Errorf("image user www: %+v", s.Process.User)
	}
	if _, err := GenerateSpec(context.Background(), "ci", "x", WithImageConfigSpec(ocispec.ImageConfig{User: "www"})); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("image user by name without a root: %v, want FailedPrecondition", err)
	}
}

func FuzzParseUserDB(f *testing.F) {
	f.Add([]byte(testPasswd), "app")
	f.Add([]byte(testGroup), "app:wheel")
	f.Add([]byte("::::\n:\n\x00"), "1:2")
	f.Fuzz(func(t *testing.T, data []byte, user string) {
		entries, err := parseUserDB(bytes.NewReader(data), 3)
		for _, e := range entries {
			if len(e) < 3 || e[0] == "" {
				t.Fatalf("entry %q", e)
			}
		}
		if err != nil && !errdefs.IsInvalidArgument(err) {
			t.Fatalf("error of class %v", err)
		}
		if u, err := parseUserSpec(user); err == nil && u.user == "" {
			t.Fatalf("%q parsed with no user", user)
		}
	})
}
