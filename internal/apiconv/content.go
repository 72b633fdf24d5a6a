package apiconv

import (
	digest "github.com/opencontainers/go-digest"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthrt/berth/content"
	contentv1 "github.com/berthrt/berth/proto/content/v1"
)

// ContentInfoToProto converts a blob's Info to its API form.
func ContentInfoToProto(info content.Info) *contentv1.Info {
	return &contentv1.Info{
		Digest:    info.Digest.String(),
		Size:      info.Size,
		CreatedAt: timestamppb.New(info.CreatedAt),
		UpdatedAt: timestamppb.New(info.UpdatedAt),
		Labels:    info.Labels,
	}
}

// ContentInfoFromProto converts an API Info.
func ContentInfoFromProto(info *contentv1.Info) content.Info {
	return content.Info{
		Digest:    digest.Digest(info.GetDigest()),
		Size:      info.GetSize(),
		CreatedAt: info.GetCreatedAt().AsTime(),
		UpdatedAt: info.GetUpdatedAt().AsTime(),
		Labels:    info.GetLabels(),
	}
}

// ContentStatusToProto converts an ingest's Status to its API form.
func ContentStatusToProto(st content.Status) *contentv1.Status {
	return &contentv1.Status{
		Ref:       st.Ref,
		Offset:    st.Offset,
		Total:     st.Total,
		Expected:  st.Expected.String(),
		StartedAt: timestamppb.New(st.StartedAt),
		UpdatedAt: timestamppb.New(st.UpdatedAt),
	}
}

// ContentStatusFromProto converts an API Status.
func ContentStatusFromProto(st *contentv1.Status) content.Status {
	return content.Status{
		Ref:       st.GetRef(),
		Offset:    st.GetOffset(),
		Total:     st.GetTotal(),
		Expected:  digest.Digest(st.GetExpected()),
		StartedAt: st.GetStartedAt().AsTime(),
		UpdatedAt: st.GetUpdatedAt().AsTime(),
	}
}

// WriteResponse is the answer of the Write stream to action: the ingest's
// status st and dgst, the digest of its bytes (verified after a commit).
func WriteResponse(action contentv1.WriteAction, st content.Status, dgst digest.Digest) *contentv1.WriteContentResponse {
	return &contentv1.WriteContentResponse{
		Action:    action,
		StartedAt: timestamppb.New(st.StartedAt),
		UpdatedAt: timestamppb.New(st.UpdatedAt),
		Offset:    st.Offset,
		Total:     st.Total,
		Digest:    dgst.String(),
		Expected:  st.Expected.String(),
	}
}

// WriteResponseStatus is the status of the ingest ref that a Write stream's
// answer carries; the inverse of WriteResponse.
func WriteResponseStatus(ref string, resp *contentv1.WriteContentResponse) content.Status {
	return content.Status{
		Ref:       ref,
		Offset:    resp.GetOffset(),
		Total:     resp.GetTotal(),
		Expected:  digest.Digest(resp.GetExpected()),
		StartedAt: resp.GetStartedAt().AsTime(),
		UpdatedAt: resp.GetUpdatedAt().AsTime(),
	}
}
