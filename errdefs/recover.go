package errdefs

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/containerd/ttrpc"
)

// RecoverPanics is a ttrpc server interceptor that turns a panic of a
// unary handler into an ErrInternal error naming the method, logged with
// its stack on slog's default logger, so that one broken call fails alone
// and the server keeps serving. Chain it inside ServerErrors, which
// converts the error.
func RecoverPanics(ctx context.Context, unmarshal ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, method ttrpc.Method) (_ any, err error) {
	defer RecoverStream(info.FullMethod, &err)
	return method(ctx, unmarshal)
}

// RecoverStream does for a stream handler what RecoverPanics does for a
// unary one (ttrpc 1.2 has no stream interceptor): deferred first in the
// handler, with the handler's named error result, it turns a panic into
// an ErrInternal error converted for the wire.
func RecoverStream(method string, err *error) {
	r := recover()
	if r == nil {
		return
	}
	slog.Error("panic in a ttrpc handler", "method", method, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	*err = ToTTRPC(fmt.Errorf("%s: a panic in the server (its log has the stack): %v: %w", method, r, ErrInternal))
}

// ServerOpts are the error edge of a ttrpc server: ServerErrors outside,
// RecoverPanics inside it.
func ServerOpts() []ttrpc.ServerOpt {
	return []ttrpc.ServerOpt{
		ttrpc.WithUnaryServerInterceptor(ServerErrors),
		ttrpc.WithChainUnaryServerInterceptor(RecoverPanics),
	}
}
