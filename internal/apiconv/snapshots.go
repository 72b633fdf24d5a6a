package apiconv

import (
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthrt/berth/mount"
	snapshotsv1 "github.com/berthrt/berth/proto/snapshots/v1"
	typesv1 "github.com/berthrt/berth/proto/types/v1"
	"github.com/berthrt/berth/snapshots"
)

// KindToProto converts a snapshot kind to its API form.
func KindToProto(k snapshots.Kind) snapshotsv1.Kind {
	switch k {
	case snapshots.KindView:
		return snapshotsv1.Kind_KIND_VIEW
	case snapshots.KindActive:
		return snapshotsv1.Kind_KIND_ACTIVE
	case snapshots.KindCommitted:
		return snapshotsv1.Kind_KIND_COMMITTED
	}
	return snapshotsv1.Kind_KIND_UNKNOWN
}

// KindFromProto is the inverse of KindToProto.
func KindFromProto(k snapshotsv1.Kind) snapshots.Kind {
	switch k {
	case snapshotsv1.Kind_KIND_VIEW:
		return snapshots.KindView
	case snapshotsv1.Kind_KIND_ACTIVE:
		return snapshots.KindActive
	case snapshotsv1.Kind_KIND_COMMITTED:
		return snapshots.KindCommitted
	}
	return snapshots.KindUnknown
}

// SnapshotInfoToProto converts a snapshot's Info to its API form; zero
// times are left unset.
func SnapshotInfoToProto(info snapshots.Info) *snapshotsv1.Info {
	out := &snapshotsv1.Info{
		Name:   info.Name,
		Parent: info.Parent,
		Kind:   KindToProto(info.Kind),
		Labels: info.Labels,
	}
	if !info.Created.IsZero() {
		out.CreatedAt = timestamppb.New(info.Created)
	}
	if !info.Updated.IsZero() {
		out.UpdatedAt = timestamppb.New(info.Updated)
	}
	return out
}

// SnapshotInfoFromProto is the inverse of SnapshotInfoToProto; times are
// UTC.
func SnapshotInfoFromProto(info *snapshotsv1.Info) snapshots.Info {
	return snapshots.Info{
		Name:    info.GetName(),
		Parent:  info.GetParent(),
		Kind:    KindFromProto(info.GetKind()),
		Labels:  info.GetLabels(),
		Created: TimeFromProto(info.GetCreatedAt()),
		Updated: TimeFromProto(info.GetUpdatedAt()),
	}
}

// MountsToProto converts mounts to their API form (shared by the
// snapshots, diff and tasks APIs and the shim's).
func MountsToProto(ms []mount.Mount) []*typesv1.Mount {
	out := make([]*typesv1.Mount, 0, len(ms))
	for _, m := range ms {
		out = append(out, &typesv1.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	return out
}

// MountsFromProto is the inverse of MountsToProto.
func MountsFromProto(ms []*typesv1.Mount) []mount.Mount {
	out := make([]mount.Mount, 0, len(ms))
	for _, m := range ms {
		out = append(out, mount.Mount{Type: m.GetType(), Source: m.GetSource(), Target: m.GetTarget(), Options: m.GetOptions()})
	}
	return out
}
