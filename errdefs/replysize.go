package errdefs

import (
	"context"
	"fmt"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"
)

// MaxReplySize bounds the encoding of a unary reply. ttrpc refuses to send
// a message over 4 MiB and, on the server, ends the whole connection when
// it tries: every call of the client on it fails. The reply travels
// wrapped with its status, for which 4 KiB are left.
const MaxReplySize = 4<<20 - 4<<10

// CheckReplySize returns an ErrResourceExhausted error naming method and
// the size when reply's encoding passes MaxReplySize; hint tells the
// caller what to do instead. A reply that is no protobuf message passes.
func CheckReplySize(method string, reply any, hint string) error {
	m, ok := reply.(proto.Message)
	if !ok {
		return nil
	}
	if n := proto.Size(m); n > MaxReplySize {
		return fmt.Errorf("%s: the reply takes %d bytes, more than the %d a ttrpc message may carry: %s: %w", method, n, MaxReplySize, hint, ErrResourceExhausted)
	}
	return nil
}

// BoundReplies is a ttrpc server interceptor that fails a call whose reply
// would pass MaxReplySize with ErrResourceExhausted instead of letting
// ttrpc close the connection it would not fit. A service whose call has a
// streaming form checks first and names it (CheckReplySize).
func BoundReplies(ctx context.Context, unmarshal ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, method ttrpc.Method) (any, error) {
	reply, err := method(ctx, unmarshal)
	if err != nil {
		return reply, err
	}
	if err := CheckReplySize(info.FullMethod, reply, "narrow the request (its filters), or use the call's streaming form"); err != nil {
		return nil, err
	}
	return reply, nil
}
