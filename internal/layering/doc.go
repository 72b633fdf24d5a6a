// Package layering holds the test of who may import whom (DESIGN.md,
// "Packages"): the client library and berthctl link the API and the shared
// vocabulary only, never bbolt, storage/ or services/; the shim links
// nothing of the daemon's side; the vocabulary imports no store. The rules
// are checked on `go list -deps`, the real link closure, so an indirect
// import through a third package is caught as well as a direct one.
package layering
