package apiconv

import (
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthrt/berth/leases"
	leasesv1 "github.com/berthrt/berth/proto/leases/v1"
)

// LeaseToProto converts a lease record to its API form; a zero CreatedAt
// is left unset.
func LeaseToProto(l leases.Lease) *leasesv1.Lease {
	out := &leasesv1.Lease{Id: l.ID, Labels: l.Labels}
	if !l.CreatedAt.IsZero() {
		out.CreatedAt = timestamppb.New(l.CreatedAt)
	}
	return out
}

// LeaseFromProto converts an API lease.
func LeaseFromProto(l *leasesv1.Lease) leases.Lease {
	return leases.Lease{ID: l.GetId(), Labels: l.GetLabels(), CreatedAt: TimeFromProto(l.GetCreatedAt())}
}

// ResourceToProto converts a lease resource to its API form.
func ResourceToProto(r leases.Resource) *leasesv1.Resource {
	return &leasesv1.Resource{Id: r.ID, Type: r.Type}
}

// ResourceFromProto converts an API lease resource.
func ResourceFromProto(r *leasesv1.Resource) leases.Resource {
	return leases.Resource{Type: r.GetType(), ID: r.GetId()}
}
