// Package transferwire is what both ends of the transfer API share beyond
// its messages: the bounds of the Import and Export streams and the
// conversion of progress reports. The daemon's service
// (services/transfer) and the client library use it, so that the client
// does not link the service's implementation (registry client,
// decompressors).
package transferwire

import (
	digest "github.com/opencontainers/go-digest"

	"github.com/berthrt/berth/images/progress"
	api "github.com/berthrt/berth/proto/transfer/v1"
)

const (
	// ChunkSize bounds the archive bytes of one Import request or Export
	// response, far below ttrpc's 4 MiB message limit.
	ChunkSize = 1 << 20
	// ImportWindow is how many archive bytes an Import client may have
	// sent beyond the daemon's last acknowledgement (received). ttrpc
	// streams have no flow control of their own: a receiver that leaves
	// its 64 messages of buffer full for a second fails the stream.
	ImportWindow = 4 << 20
)

// ProgressToProto converts a report to its API form.
func ProgressToProto(p progress.Progress) *api.Progress {
	return &api.Progress{
		Ref:       p.Ref,
		Digest:    p.Digest.String(),
		MediaType: p.MediaType,
		Status:    string(p.Status),
		Offset:    p.Offset,
		Total:     p.Total,
	}
}

// ProgressFromProto converts an API report.
func ProgressFromProto(p *api.Progress) progress.Progress {
	return progress.Progress{
		Ref:       p.GetRef(),
		Digest:    digest.Digest(p.GetDigest()),
		MediaType: p.GetMediaType(),
		Status:    progress.Status(p.GetStatus()),
		Offset:    p.GetOffset(),
		Total:     p.GetTotal(),
	}
}
