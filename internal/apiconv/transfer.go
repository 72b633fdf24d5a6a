package apiconv

import (
	digest "github.com/opencontainers/go-digest"

	"github.com/berthrt/berth/images/progress"
	transferv1 "github.com/berthrt/berth/proto/transfer/v1"
)

// ProgressToProto converts a progress report to its API form.
func ProgressToProto(p progress.Progress) *transferv1.Progress {
	return &transferv1.Progress{
		Ref:       p.Ref,
		Digest:    p.Digest.String(),
		MediaType: p.MediaType,
		Status:    string(p.Status),
		Offset:    p.Offset,
		Total:     p.Total,
	}
}

// ProgressFromProto converts an API progress report.
func ProgressFromProto(p *transferv1.Progress) progress.Progress {
	return progress.Progress{
		Ref:       p.GetRef(),
		Digest:    digest.Digest(p.GetDigest()),
		MediaType: p.GetMediaType(),
		Status:    progress.Status(p.GetStatus()),
		Offset:    p.GetOffset(),
		Total:     p.GetTotal(),
	}
}
