package oci

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/errdefs"
)

const (
	// userDBMax bounds how much of /etc/passwd or /etc/group is read, in
	// bytes: an image's files are untrusted input.
	userDBMax = 16 << 20
	// userDBLineMax bounds one line of them, in bytes.
	userDBLineMax = 64 << 10
)

// RootFS returns the path of a container's root filesystem, mounted at
// least for reading, in which WithUser looks up user and group names.
type RootFS func(ctx context.Context) (string, error)

type rootFSKey struct{}

// ContextWithRootFS returns a copy of ctx under which WithUser (and
// WithImageConfig) look names up in the root filesystem rootfs returns,
// when the spec's root path is not absolute. It is how a client that
// generates the spec of a container made from a snapshot lends the
// snapshot, mounted on demand, to the options; rootfs may be called more
// than once and should mount only once.
func ContextWithRootFS(ctx context.Context, rootfs RootFS) context.Context {
	return context.WithValue(ctx, rootFSKey{}, rootfs)
}

// WithUser sets the user and groups the process runs as from user, as
// Docker and containerd take it: "uid", "uid:gid", "name", "name:group",
// "uid:group" or "name:gid". Names are looked up in the container's
// /etc/passwd and /etc/group, read inside its root filesystem (symlinks
// cannot lead out of it): the spec's root path when it is absolute, else
// the one the context names (ContextWithRootFS). Without a group, the
// primary group is the user's in /etc/passwd, or 0 when the file does not
// list the uid; the groups /etc/group lists the user in are added. A
// numeric "uid:gid" is taken as it is, without a lookup.
//
// A name that is not listed fails with errdefs.ErrNotFound; a name when
// no root filesystem is at hand with errdefs.ErrFailedPrecondition.
func WithUser(user string) SpecOpts {
	return func(ctx context.Context, s *specs.Spec) error {
		root := ""
		if s.Root != nil && filepath.IsAbs(s.Root.Path) {
			root = s.Root.Path
		}
		u, err := resolveUser(ctx, root, user)
		if err != nil {
			return err
		}
		p := ensureProcess(s)
		p.User.UID, p.User.GID, p.User.AdditionalGids = u.UID, u.GID, u.AdditionalGids
		return nil
	}
}

// ResolveUser resolves user as WithUser does, in the root filesystem at
// root ("" for none: then only numeric users resolve), such as the
// /proc/PID/root of a running container.
func ResolveUser(root, user string) (specs.User, error) {
	return resolveUser(context.Background(), root, user)
}

// userSpec is a parsed "user[:group]".
type userSpec struct {
	user, group   string
	uid, gid      uint32
	uidOK, gidOK  bool // user, group are numeric
	hasGroup      bool
	original      string
	lookupNeeded  bool // names to resolve, or a primary group to find
	namesRequired bool // lookupNeeded for a name, not only for a uid's group
}

func parseUserSpec(s string) (userSpec, error) {
	u := userSpec{original: s}
	u.user, u.group, u.hasGroup = strings.Cut(s, ":")
	if u.user == "" || (u.hasGroup && u.group == "") || strings.ContainsAny(s, "\n\x00") || strings.Count(s, ":") > 1 {
		return u, invalid("user %q: want USER[:GROUP], each a name or a number", s)
	}
	if n, err := strconv.ParseUint(u.user, 10, 32); err == nil {
		u.uid, u.uidOK = uint32(n), true
	}
	if u.hasGroup {
		if n, err := strconv.ParseUint(u.group, 10, 32); err == nil {
			u.gid, u.gidOK = uint32(n), true
		}
	}
	u.namesRequired = !u.uidOK || (u.hasGroup && !u.gidOK)
	u.lookupNeeded = u.namesRequired || !u.hasGroup
	return u, nil
}

func resolveUser(ctx context.Context, root, user string) (specs.User, error) {
	u, err := parseUserSpec(user)
	if err != nil {
		return specs.User{}, err
	}
	if !u.lookupNeeded {
		return specs.User{UID: u.uid, GID: u.gid}, nil
	}
	if root == "" {
		if rootfs, ok := ctx.Value(rootFSKey{}).(RootFS); ok {
			if root, err = rootfs(ctx); err != nil {
				return specs.User{}, fmt.Errorf("user %q: %w", user, err)
			}
		}
	}
	if root == "" {
		if u.namesRequired {
			return specs.User{}, fmt.Errorf("user %q: a name needs the container's root filesystem to look it up in, and none is at hand: %w", user, errdefs.ErrFailedPrecondition)
		}
		return specs.User{UID: u.uid}, nil
	}
	return u.lookup(root)
}

// lookup resolves u in the /etc/passwd and /etc/group of root.
func (u userSpec) lookup(root string) (specs.User, error) {
	users, err := readUserDB(root, "etc/passwd", 4)
	if err != nil && (!u.uidOK || !errdefs.IsNotFound(err)) {
		return specs.User{}, fmt.Errorf("user %q: %w", u.original, err)
	}
	out := specs.User{UID: u.uid}
	name := ""
	if i := slices.IndexFunc(users, func(e []string) bool {
		if u.uidOK {
			return e[2] == strconv.FormatUint(uint64(u.uid), 10)
		}
		return e[0] == u.user
	}); i >= 0 {
		uid, uerr := strconv.ParseUint(users[i][2], 10, 32)
		gid, gerr := strconv.ParseUint(users[i][3], 10, 32)
		if uerr != nil || gerr != nil {
			return specs.User{}, invalid("user %q: /etc/passwd has a bad entry %q", u.original, strings.Join(users[i], ":"))
		}
		name, out.UID, out.GID = users[i][0], uint32(uid), uint32(gid)
	} else if !u.uidOK {
		return specs.User{}, fmt.Errorf("user %q: no user %q in the container's /etc/passwd: %w", u.original, u.user, errdefs.ErrNotFound)
	}

	groups, err := readUserDB(root, "etc/group", 3)
	if err != nil && ((u.hasGroup && !u.gidOK) || !errdefs.IsNotFound(err)) {
		return specs.User{}, fmt.Errorf("user %q: %w", u.original, err)
	}
	if u.hasGroup {
		out.GID = u.gid
		if !u.gidOK {
			i := slices.IndexFunc(groups, func(e []string) bool { return e[0] == u.group })
			if i < 0 {
				return specs.User{}, fmt.Errorf("user %q: no group %q in the container's /etc/group: %w", u.original, u.group, errdefs.ErrNotFound)
			}
			gid, gerr := strconv.ParseUint(groups[i][2], 10, 32)
			if gerr != nil {
				return specs.User{}, invalid("user %q: /etc/group has a bad entry %q", u.original, strings.Join(groups[i], ":"))
			}
			out.GID = uint32(gid)
		}
	}
	if name == "" {
		return out, nil
	}
	for _, g := range groups {
		if len(g) < 4 || !slices.Contains(strings.Split(g[3], ","), name) {
			continue
		}
		gid, err := strconv.ParseUint(g[2], 10, 32)
		if err != nil || uint32(gid) == out.GID || slices.Contains(out.AdditionalGids, uint32(gid)) {
			continue
		}
		out.AdditionalGids = append(out.AdditionalGids, uint32(gid))
	}
	slices.Sort(out.AdditionalGids)
	return out, nil
}

// readUserDB reads the colon-separated entries of the file name inside
// root, those with at least fields fields; other lines are skipped, as
// libc skips them.
func readUserDB(root, name string, fields int) ([][]string, error) {
	f, err := openInRoot(root, name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	entries, err := parseUserDB(io.LimitReader(f, userDBMax), fields)
	if err != nil {
		return nil, fmt.Errorf("read /%s: %w", name, err)
	}
	return entries, nil
}

func parseUserDB(r io.Reader, fields int) ([][]string, error) {
	var entries [][]string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), userDBLineMax)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '+' || line[0] == '-' {
			continue
		}
		if e := strings.Split(line, ":"); len(e) >= fields && e[0] != "" {
			entries = append(entries, e)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, invalid("%v", err)
	}
	return entries, nil
}

// openInRoot opens the regular file name for reading, resolved inside
// root as if root were "/": neither "..", nor an absolute or relative
// symlink, nor a race with a rename can lead out of root. Anything but a
// regular file (a FIFO would block the read) is refused.
func openInRoot(root, name string) (*os.File, error) {
	h, err := pathrs.OpenInRoot(root, name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("the container has no /%s: %w", name, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open /%s in the container's root: %w", name, err)
	}
	defer h.Close()
	st, err := h.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat /%s: %w", name, err)
	}
	if !st.Mode().IsRegular() {
		return nil, invalid("/%s in the container's root is not a regular file (%v)", name, st.Mode().Type())
	}
	f, err := pathrs.Reopen(h, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("open /%s: %w", name, err)
	}
	return f, nil
}
