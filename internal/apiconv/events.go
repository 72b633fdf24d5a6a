package apiconv

import (
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthrt/berth/events"
	eventsv1 "github.com/berthrt/berth/proto/events/v1"
)

// EnvelopeToProto converts an exchange envelope to its API form.
func EnvelopeToProto(env *events.Envelope) *eventsv1.Envelope {
	return &eventsv1.Envelope{Timestamp: timestamppb.New(env.Timestamp), Namespace: env.Namespace, Topic: env.Topic, Event: env.Event}
}

// EnvelopeFromProto converts an API envelope. An unset timestamp becomes
// the Unix epoch (what the events service has always forwarded), not the
// zero time; envelopes the daemon sends always carry one.
func EnvelopeFromProto(env *eventsv1.Envelope) *events.Envelope {
	return &events.Envelope{Timestamp: env.GetTimestamp().AsTime(), Namespace: env.GetNamespace(), Topic: env.GetTopic(), Event: env.GetEvent()}
}
