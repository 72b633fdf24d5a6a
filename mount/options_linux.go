package mount

import (
	"strings"

	"golang.org/x/sys/unix"
)

// flagOp is what one option does to the mount flags: set bits, then clear
// bits. Options that exclude each other (the atime modes) clear the others,
// so the last one given wins.
type flagOp struct {
	set, clear uintptr
}

const atimeModes = unix.MS_NOATIME | unix.MS_RELATIME | unix.MS_STRICTATIME

var mountFlags = map[string]flagOp{
	"defaults":    {},
	"ro":          {set: unix.MS_RDONLY},
	"rw":          {clear: unix.MS_RDONLY},
	"nosuid":      {set: unix.MS_NOSUID},
	"suid":        {clear: unix.MS_NOSUID},
	"nodev":       {set: unix.MS_NODEV},
	"dev":         {clear: unix.MS_NODEV},
	"noexec":      {set: unix.MS_NOEXEC},
	"exec":        {clear: unix.MS_NOEXEC},
	"sync":        {set: unix.MS_SYNCHRONOUS},
	"async":       {clear: unix.MS_SYNCHRONOUS},
	"dirsync":     {set: unix.MS_DIRSYNC},
	"remount":     {set: unix.MS_REMOUNT},
	"bind":        {set: unix.MS_BIND},
	"rbind":       {set: unix.MS_BIND | unix.MS_REC},
	"mand":        {set: unix.MS_MANDLOCK},
	"nomand":      {clear: unix.MS_MANDLOCK},
	"noatime":     {set: unix.MS_NOATIME, clear: atimeModes &^ unix.MS_NOATIME},
	"atime":       {clear: unix.MS_NOATIME},
	"relatime":    {set: unix.MS_RELATIME, clear: atimeModes &^ unix.MS_RELATIME},
	"strictatime": {set: unix.MS_STRICTATIME, clear: atimeModes &^ unix.MS_STRICTATIME},
	"nodiratime":  {set: unix.MS_NODIRATIME},
	"diratime":    {clear: unix.MS_NODIRATIME},
}

// propagationFlags change a mount's propagation type. mount(2) takes them
// in a call of their own, and only one per call: the last one given wins.
var propagationFlags = map[string]uintptr{
	"private":     unix.MS_PRIVATE,
	"rprivate":    unix.MS_PRIVATE | unix.MS_REC,
	"shared":      unix.MS_SHARED,
	"rshared":     unix.MS_SHARED | unix.MS_REC,
	"slave":       unix.MS_SLAVE,
	"rslave":      unix.MS_SLAVE | unix.MS_REC,
	"unbindable":  unix.MS_UNBINDABLE,
	"runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// perMountFlags are the flags that a new bind mount ignores; they take
// effect only through a bind remount.
const perMountFlags = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC |
	unix.MS_NODIRATIME | atimeModes

// ParseOptions splits fstab-style options into mount flags, a propagation
// change (0 if none) and the filesystem data: every option that is not a
// flag, joined by commas in order. Empty options are ignored; where options
// contradict each other (ro, rw) the later one wins.
func ParseOptions(opts []string) (flags uintptr, propagation uintptr, data string) {
	var rest []string
	for _, o := range opts {
		if op, ok := mountFlags[o]; ok {
			flags = flags&^op.clear | op.set
			continue
		}
		if p, ok := propagationFlags[o]; ok {
			propagation = p
			continue
		}
		if o != "" {
			rest = append(rest, o)
		}
	}
	return flags, propagation, strings.Join(rest, ",")
}
