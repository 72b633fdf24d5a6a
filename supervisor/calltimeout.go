package supervisor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/containerd/ttrpc"
)

// DefaultCallTimeout bounds a shim call whose caller set no deadline
// (Config.CallTimeout). A runtime's create or start with slow hooks on a
// loaded machine stays well inside it.
const DefaultCallTimeout = 2 * time.Minute

// unboundedShimCalls are the calls that last as long as what they watch:
// Wait returns when the process exits. (Events is a stream and never
// passes through a unary interceptor.)
var unboundedShimCalls = map[string]bool{
	"/berth.shim.v1.Task/Wait": true,
}

// callDeadline returns a client interceptor that gives every shim call
// but those of unboundedShimCalls a deadline of d when its context has
// none. ttrpc 1.2 carries a deadline to the shim but not a cancellation,
// so without it a call whose caller gave up (or never set a bound) would
// wait for the shim's answer as long as a hung runtime makes it wait,
// holding whatever its caller holds (a container's lock).
func callDeadline(d time.Duration) ttrpc.UnaryClientInterceptor {
	return func(ctx context.Context, req *ttrpc.Request, resp *ttrpc.Response, info *ttrpc.UnaryClientInfo, invoker ttrpc.Invoker) error {
		if _, ok := ctx.Deadline(); ok || unboundedShimCalls[info.FullMethod] {
			return invoker(ctx, req, resp)
		}
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		err := invoker(ctx, req, resp)
		if err != nil && errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("shim call %s: no answer within %v, the bound of a call whose caller set no deadline: %w", info.FullMethod, d, err)
		}
		return err
	}
}
