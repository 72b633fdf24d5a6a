package archive

import (
	"archive/tar"
	"fmt"
	"sort"
	"strings"

	"github.com/berthrt/berth/errdefs"
)

// maxXattrNameLen is XATTR_NAME_MAX.
const maxXattrNameLen = 255

type xattr struct {
	name  string
	value []byte
}

// keptXattr reports whether an xattr of this name is written to disk (and
// read into a tar by Compare): see the package documentation.
func keptXattr(name string) bool {
	switch {
	case strings.HasPrefix(name, "user."):
		return true
	case name == "security.capability", name == "system.posix_acl_access", name == "system.posix_acl_default":
		return true
	}
	return false
}

// xattrs returns the xattrs of hdr that policy keeps, in name order, and
// refuses one over the limits.
func (a *applier) xattrs(hdr *tar.Header) ([]xattr, error) {
	var out []xattr
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, paxXattrPrefix)
		if !ok {
			continue
		}
		if len(name) > maxXattrNameLen || len(v) > a.opts.limits.MaxXattrSize {
			return nil, fmt.Errorf("xattr %.64q: name of %d bytes or value of %d bytes, more than %d or %d: %w",
				name, len(name), len(v), maxXattrNameLen, a.opts.limits.MaxXattrSize, errdefs.ErrInvalidArgument)
		}
		if keptXattr(name) {
			out = append(out, xattr{name: name, value: []byte(v)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}
