package cri

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"

	"google.golang.org/grpc"

	"github.com/berthrt/berth/errdefs"
)

// ServerOptions are the edge of the CRI's gRPC server: error classes
// become status codes (UnaryErrors, and the same for streams), and a panic
// in a handler is an Internal error of that call alone, logged on log with
// its stack, so that the kubelet's other calls are served on.
func ServerOptions(log *slog.Logger) []grpc.ServerOption {
	r := recoverer{log: log}
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(UnaryErrors, r.unary),
		grpc.ChainStreamInterceptor(r.stream),
	}
}

type recoverer struct{ log *slog.Logger }

func (r recoverer) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (_ any, err error) {
	defer r.recover(ctx, info.FullMethod, &err)
	return handler(ctx, req)
}

func (r recoverer) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer func() { err = errdefs.ToTTRPC(err) }()
	defer r.recover(ss.Context(), info.FullMethod, &err)
	return handler(srv, ss)
}

// recover, deferred, turns a panic into an ErrInternal error naming the
// method; the stack goes to the log, not to the caller.
func (r recoverer) recover(ctx context.Context, method string, err *error) {
	p := recover()
	if p == nil {
		return
	}
	r.log.ErrorContext(ctx, "panic in a CRI handler", "method", method, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	*err = fmt.Errorf("%s: a panic in the server (its log has the stack): %v: %w", method, p, errdefs.ErrInternal)
}
