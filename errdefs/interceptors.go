package errdefs

import (
	"context"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ServerErrors is the server side of the error edge, for every ttrpc server
// (the daemon, the shim, an external snapshotter): it turns a handler's
// error class into a ttrpc status code.
func ServerErrors(ctx context.Context, unmarshal ttrpc.Unmarshaler, _ *ttrpc.UnaryServerInfo, method ttrpc.Method) (any, error) {
	resp, err := method(ctx, unmarshal)
	return resp, ToTTRPC(err)
}

// ClientErrors is the client side of the error edge: a status code comes
// back as the error class, so errors.Is(err, ErrNotFound) works.
func ClientErrors(ctx context.Context, req *ttrpc.Request, resp *ttrpc.Response, _ *ttrpc.UnaryClientInfo, invoker ttrpc.Invoker) error {
	if err := invoker(ctx, req, resp); err != nil {
		return FromTTRPC(err)
	}
	// An application error travels as the response's status, which the
	// ttrpc client would only turn into a bare status error after us.
	if resp.Status != nil && resp.Status.Code != int32(codes.OK) {
		return FromTTRPC(status.ErrorProto(resp.Status))
	}
	return nil
}
