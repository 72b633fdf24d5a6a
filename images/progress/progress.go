// Package progress is the report that pulls, pushes, imports and exports
// give about each blob they move. It is apart from its producers
// (distribution, images/archive) so that their clients (the client
// library, berthctl) read reports without linking a registry client.
package progress

import digest "github.com/opencontainers/go-digest"

// Status is the state of one blob of a transfer.
type Status string

const (
	// StatusWaiting: the blob waits for a free fetch or upload slot.
	StatusWaiting Status = "waiting"
	// StatusDownloading: bytes are arriving; Offset says how many.
	StatusDownloading Status = "downloading"
	// StatusUploading: bytes are leaving; Offset says how many.
	StatusUploading Status = "uploading"
	// StatusExists: the blob was there already (in the content store on
	// a pull, in the registry on a push); nothing was transferred.
	StatusExists Status = "exists"
	// StatusDone: the blob is verified and committed (pull) or accepted
	// (push).
	StatusDone Status = "done"
)

// Progress is one report about one blob.
type Progress struct {
	// Ref is the ingest ref of the blob ("pull-sha256:…"; the
	// namespaced content store keeps it as "<namespace>/pull-sha256:…"),
	// or "push-sha256:…" on a push.
	Ref       string
	Digest    digest.Digest
	MediaType string
	Status    Status
	// Offset is the bytes transferred or persisted so far; a resumed
	// download starts at the offset the ingest had reached.
	Offset int64
	// Total is the blob's size.
	Total int64
}

// Func receives reports. A producer documents how it calls it (package
// distribution serialises the calls and bounds their rate).
type Func func(Progress)
