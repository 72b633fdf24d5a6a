package shimapi

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/berthrt/berth/errdefs"
)

// EventPayload returns the message set in env's event oneof, for relaying
// it as a typed payload (google.protobuf.Any) to subscribers.
func EventPayload(env *Envelope) (proto.Message, error) {
	m := env.ProtoReflect()
	oneof := m.Descriptor().Oneofs().ByName("event")
	fd := m.WhichOneof(oneof)
	if fd == nil {
		return nil, fmt.Errorf("shim event %d (%s) carries no payload: %w", env.GetSeq(), env.GetTopic(), errdefs.ErrInvalidArgument)
	}
	return m.Get(fd).Message().Interface(), nil
}
