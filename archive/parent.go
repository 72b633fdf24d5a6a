package archive

import (
	"archive/tar"
	"bufio"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// parentDir is the folder of the entries being applied, open, with what
// decides whether a file made in it needs its owner and mode set apart.
//
// Keeping it open across entries is sound because a folder's path inside
// root names the same folder until something on that path is removed:
// nothing is ever renamed, every entry removes only a child of its own
// (cached) folder, which cannot be on that folder's path, and a whiteout,
// which removes elsewhere, forgets the cached folder first.
type parentDir struct {
	name string // relative to root; valid only while fd >= 0
	fd   int    // O_PATH; -1 when none is kept
	// canon is name as the kernel resolved it (no symlink on the way),
	// and ref counts the files in flight made in fd: both only with
	// workers (parallel.go).
	canon string
	ref   *dirRef
	// exact is true when a file made in the folder gets the mode it is
	// made with (less the umask) and the owner a.uid/a.gid: the folder
	// has no default ACL, no setgid bit (a new folder would inherit it)
	// and its group is a.gid (a new file takes it under the grpid mount
	// option).
	exact bool
}

// parentOf returns the folder dir (relative to root, "" for root), made
// with its missing parents when absent, and keeps it for the next entry.
// The descriptor belongs to the applier: callers do not close it.
func (a *applier) parentOf(dir string) (*parentDir, error) {
	if a.parent.fd >= 0 && a.parent.name == dir {
		return &a.parent, nil
	}
	a.forgetParent()
	fd, canon, err := a.openFolder(dir)
	if err != nil {
		return nil, err
	}
	a.parent = parentDir{name: dir, canon: canon, fd: fd, exact: a.plainFolder(fd)}
	if a.workers != nil {
		a.parent.ref = &dirRef{fd: fd}
	}
	return &a.parent, nil
}

// forgetParent closes the kept folder, once no file in flight is made in
// it.
func (a *applier) forgetParent() {
	switch {
	case a.parent.fd < 0:
	case a.parent.ref != nil && a.workers != nil:
		a.workers.retire(a.parent.ref)
	default:
		unix.Close(a.parent.fd)
	}
	a.parent = parentDir{fd: -1}
}

// plainFolder reports whether files made in the folder fd get a.gid as
// group, no setgid bit and no mode from a default ACL.
func (a *applier) plainFolder(fd int) bool {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || int(st.Gid) != a.gid || st.Mode&unix.S_ISGID != 0 {
		return false
	}
	// An O_PATH descriptor takes no fgetxattr; its /proc link does.
	_, err := unix.Getxattr("/proc/self/fd/"+strconv.Itoa(fd), "system.posix_acl_default", nil)
	return err == unix.ENODATA || err == unix.ENOTSUP
}

// exactMeta reports whether an entry made in p with mode (through open or
// mkdir, whose mode the umask masks) has its owner, mode and xattrs as
// hdr wants them, so that fchown, fsetxattr and fchmod can be left out.
// Setuid, setgid and sticky bits always take an fchmod: a write or a
// chown may clear them.
func (a *applier) exactMeta(hdr *tar.Header, p *parentDir, mode uint32, xattrs []xattr) bool {
	return p.exact && len(xattrs) == 0 && a.umask >= 0 &&
		mode&^0o777 == 0 && mode&uint32(a.umask) == 0 &&
		(!a.owner || (hdr.Uid == a.uid && hdr.Gid == a.gid))
}

// replacing runs mk, which makes base in the folder dirfd, and, when base
// exists already (EEXIST), removes it (a folder with its contents) and
// runs mk again: a later entry of a name replaces the earlier one. Trying
// first spares a lookup for each entry in the common case.
func replacing(dirfd int, base string, mk func() error) error {
	err := mk()
	if err != unix.EEXIST {
		return err
	}
	if err := removeAllAt(dirfd, base); err != nil {
		return err
	}
	return mk()
}

// currentUmask reads the process's umask from /proc/self/status (Linux
// 4.7 or later; reading it with umask(2) would set it). -1 when unknown:
// then every file's mode is set with fchmod.
//
// The umask must not change while Apply runs: berthd and berth-shim set
// it only around the creation of their sockets, before they serve.
func currentUmask() int {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Umask:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			if err != nil {
				return -1
			}
			return int(m)
		}
	}
	return -1
}
