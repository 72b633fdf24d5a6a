package errdefs

import (
	"context"
	"fmt"
	"log"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/containerd/ttrpc"
)

// RecoverPanics is a ttrpc server interceptor that turns a panic of a
// unary handler into an ErrInternal error naming the method, logged with
// its stack (SetPanicLog), so that one broken call fails alone and the
// server keeps serving. Chain it inside ServerErrors, which
// converts the error.
func RecoverPanics(ctx context.Context, unmarshal ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, method ttrpc.Method) (_ any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = panicked(info.FullMethod, r)
		}
	}()
	return method(ctx, unmarshal)
}

// PanicLog logs a handler's panic: the call's full method, the panic's
// value and the stack of the panicking goroutine.
type PanicLog func(method, value string, stack []byte)

// panicLog is what SetPanicLog set; nil: the log package's standard logger.
var panicLog atomic.Pointer[PanicLog]

// SetPanicLog sends the panics of every server's handlers to fn, a
// program's structured logger (berthd's slog logger, the shim's JSON log).
// Until it is called they go to the log package's standard logger. This
// package does not import log/slog itself: linking it would cost every
// shim 0.1 MB of binary (bench/README.md).
func SetPanicLog(fn PanicLog) { panicLog.Store(&fn) }

func panicked(method string, r any) error {
	if fn := panicLog.Load(); fn != nil && *fn != nil {
		(*fn)(method, fmt.Sprint(r), debug.Stack())
	} else {
		log.Printf("panic in a ttrpc handler: method=%s panic=%v\n%s", method, r, debug.Stack())
	}
	return ToTTRPC(fmt.Errorf("%s: a panic in the server (its log has the stack): %v: %w", method, r, ErrInternal))
}

// CallObserver is told of each call a ttrpc server served: its full
// method ("/pkg.Service/Method"), how long it took, and the error it
// ended with, a panic's included (nil when it succeeded).
type CallObserver func(fullMethod string, took time.Duration, err error)

type streamObserverKey struct{}

// WithStreamObserver returns ctx, to be given to a ttrpc server's Serve,
// carrying fn: every handler's context derives from it, so that each
// stream handler's StreamCall reports to fn. It is a value of the server
// in its calls' contexts, as net/http's ServerContextKey is. (ttrpc 1.2
// has no stream interceptor, and the generated registration hands the
// handlers to a *ttrpc.Server directly, so they cannot be wrapped when
// they are registered.)
func WithStreamObserver(ctx context.Context, fn CallObserver) context.Context {
	return context.WithValue(ctx, streamObserverKey{}, fn)
}

// StreamCall is the edge of one stream handler: the handler's first
// statement is
//
//	defer errdefs.StreamCall(ctx, "/pkg.Service/Method").Done(&err)
//
// with its named error result, so that a panic becomes an ErrInternal
// error (as RecoverPanics makes a unary call's) and the call, its duration and its
// error reach the observer of ctx's server (WithStreamObserver), a
// panicking call's too.
func StreamCall(ctx context.Context, method string) StreamEdge {
	fn, _ := ctx.Value(streamObserverKey{}).(CallObserver)
	return StreamEdge{method: method, observe: fn, start: time.Now()}
}

// StreamEdge is one stream call under way (StreamCall).
type StreamEdge struct {
	method  string
	observe CallObserver // nil: none
	start   time.Time
}

// Done ends the call; deferred, it recovers a panic of the handler.
func (e StreamEdge) Done(err *error) {
	if r := recover(); r != nil {
		*err = panicked(e.method, r)
	}
	if e.observe != nil {
		e.observe(e.method, time.Since(e.start), *err)
	}
}

// ServerOpts are the error edge of a ttrpc server: ServerErrors outside,
// RecoverPanics and BoundReplies inside it, and between them the
// observers, which thus see every unary call's outcome, a panic or an
// oversized reply included, as the error it becomes.
func ServerOpts(observers ...ttrpc.UnaryServerInterceptor) []ttrpc.ServerOpt {
	return []ttrpc.ServerOpt{
		ttrpc.WithUnaryServerInterceptor(ServerErrors),
		ttrpc.WithChainUnaryServerInterceptor(append(observers[:len(observers):len(observers)], RecoverPanics, BoundReplies)...),
	}
}
