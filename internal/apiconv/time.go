package apiconv

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
)

// TimeFromProto is ts as a time, the zero time when ts is unset (where
// ts.AsTime would give the Unix epoch).
func TimeFromProto(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}
