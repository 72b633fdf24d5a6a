// Package version holds the build's version, set at link time:
//
//	go build -ldflags "-X github.com/berthrt/berth/version.Version=v0.1.0"
package version

// Version of this build.
var Version = "v0.1.0-dev"
