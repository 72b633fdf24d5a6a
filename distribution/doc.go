// Package distribution moves images between OCI registries and the
// content store: references, registry hosts, resolve, fetch, pull and
// push. It is a library over content.Store; the daemon's image service
// drives it and streams its progress.
//
// # Parts
//
//	ref.go       ParseRef: references normalised as docker and containerd do
//	hosts.go     LoadHosts: a registry's hosts from a containerd hosts.toml folder
//	resolver.go  Resolver, Repository: the registry API (OCI distribution /
//	             Docker Registry HTTP API v2) over TLS or plain HTTP, with
//	             basic and bearer-token auth and Docker config.json credentials
//	pull.go      Pull: resolve → index → platforms → manifest → config and layers
//	push.go      Push: missing blobs, then manifests, then the tag
//	timeouts.go  Timeouts: the bounds of every request, and the transport that keeps them
//	progress.go  Progress reports per blob (the type: package images/progress)
//	platform.go  ParsePlatform (package images/platform) and matching
//
// The wire protocol is oras-go's (oras.land/oras-go/v2 registry/remote and
// its auth and credentials packages): resolve, manifest and blob uploads,
// existence checks, WWW-Authenticate challenges, token endpoints and
// scopes, and Docker config files with credential helpers. Blob downloads
// are this package's own GET, so that a resumed download asks for the
// bytes it lacks with a Range header, and so that hosts other than the
// registry (mirrors) are tried in the order hosts.toml gives.
//
// # Invariants
//
//   - Every byte is verified before it is committed: manifests against
//     their descriptor in memory (at most MaxManifestSize bytes), blobs by
//     the content store's Commit. A mismatch is ErrFailedPrecondition and
//     leaves nothing of that blob.
//   - A manifest or index is committed after everything it references,
//     labelled berth.io/gc.ref.content.* (package metadata's
//     LabelGCRefContent) with its children's digests, so garbage
//     collection reaches the whole image from its target.
//   - Ingests are named "pull-<digest>"; an interrupted download is
//     resumed at the persisted offset by the next try.
//   - No wait on a registry is unbounded: every request (resolve, token,
//     manifest, blob, and a push's checks and uploads) gets a connection
//     time, a response-header time and a stall bound (Timeouts); the one
//     that runs out fails the request with a TimeoutError naming the host
//     and the step (ErrUnavailable, so a pull tries the next host and
//     resumes a blob). A pull waits for a blob's ingest that another
//     writer holds only while that writer moves it on.
//   - Docker schema 1 manifests are refused with ErrNotImplemented.
//   - Errors wrap the classes of package errdefs: ErrNotFound,
//     ErrPermissionDenied (401, 403), ErrUnavailable (network, 5xx,
//     429), ErrInvalidArgument.
package distribution
