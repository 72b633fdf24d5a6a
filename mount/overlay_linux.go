package mount

import (
	"fmt"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// compactLowerdir shortens the lowerdir option of an overlay whose data
// does not fit a page: the lower folders become relative to the deepest
// folder they all lie under, which the mount must then be made from. It
// returns that folder and the new options, or ok false when there is
// nothing to shorten (one lower folder, relative or escaped paths, no
// common folder but the root).
func compactLowerdir(opts []string) (dir string, compacted []string, ok bool) {
	at := -1
	for i, o := range opts {
		if strings.HasPrefix(o, "lowerdir=") {
			at = i
		}
	}
	if at < 0 {
		return "", nil, false
	}
	lowers := strings.Split(strings.TrimPrefix(opts[at], "lowerdir="), ":")
	if len(lowers) < 2 || strings.Contains(opts[at], `\`) {
		return "", nil, false
	}
	common := ""
	for i, l := range lowers {
		if !filepath.IsAbs(l) {
			return "", nil, false
		}
		l = filepath.Clean(l)
		lowers[i] = l
		if i == 0 {
			common = filepath.Dir(l)
			continue
		}
		for common != "/" && !strings.HasPrefix(l, common+"/") {
			common = filepath.Dir(common)
		}
	}
	if common == "/" {
		return "", nil, false
	}
	for i, l := range lowers {
		lowers[i] = strings.TrimPrefix(l, common+"/")
	}
	compacted = append([]string(nil), opts...)
	compacted[at] = "lowerdir=" + strings.Join(lowers, ":")
	return common, compacted, true
}

// mountFrom is mount(2) with dir as the working folder, against which the
// kernel resolves relative paths in data. The working folder is per
// process, so the call runs on a thread of its own that stops sharing it
// (unshare CLONE_FS) and is never handed back to the Go scheduler: the
// thread ends with its goroutine.
func mountFrom(dir, source, target, fstype string, flags uintptr, data string) error {
	if dir == "" {
		return unix.Mount(source, target, fstype, flags, data)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked, see above
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unshare CLONE_FS: %w", err)
			return
		}
		if err := unix.Chdir(dir); err != nil {
			errc <- fmt.Errorf("chdir %s: %w", dir, err)
			return
		}
		errc <- unix.Mount(source, target, fstype, flags, data)
	}()
	return <-errc
}
