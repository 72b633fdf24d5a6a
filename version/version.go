// Package version holds the build's version, set at link time:
//
//	go build -ldflags "-X github.com/berthrt/berth/version.Version=v0.1.0"
package version

import "runtime/debug"

// Version of this build.
var Version = "v0.1.0-dev"

// Revision returns the VCS revision the binary was built from, when the Go
// toolchain recorded one (a build inside the git checkout), with "+dirty"
// for uncommitted changes; empty otherwise.
func Revision() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev == "" {
		return ""
	}
	return rev + dirty
}
