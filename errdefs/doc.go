// Package errdefs defines berth's error classes and their conversion at the
// RPC edge.
//
// A class is a sentinel error (ErrNotFound, ErrInvalidArgument, …). Code
// that fails for a reason a caller may act on wraps a class with %w:
//
//	return fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
//
// and callers test it with errors.Is or the Is* helpers.
//
// Invariants:
//   - Every class maps to exactly one ttrpc (gRPC) status code, and every
//     class survives ToTTRPC followed by FromTTRPC: errors.Is still holds.
//   - The message is carried verbatim: what a client prints after
//     FromTTRPC equals what the server's error said, with no class name or
//     code added.
//   - Conversion happens once per side: servers call ToTTRPC on the error a
//     handler returns, clients call FromTTRPC on the error a call returns.
//     Both are idempotent, so a forwarding hop (daemon in front of a shim)
//     may convert again without changing code or message.
//   - context.Canceled and context.DeadlineExceeded travel as the Canceled
//     and DeadlineExceeded codes and come back as those context errors.
//   - A panic in a handler is an ErrInternal error of that call only,
//     logged with its stack (SetPanicLog): ServerOpts chains RecoverPanics for unary
//     calls, and every stream handler defers StreamCall(...).Done (ttrpc
//     1.2 has no stream interceptor).
//   - A server's observers (the interceptors given to ServerOpts, the
//     CallObserver of WithStreamObserver) see each call once, with the
//     error it ends with, a panicking call's included.
//   - A unary reply never passes ttrpc's message limit: ServerOpts chains
//     BoundReplies, which fails a call whose reply would with
//     ErrResourceExhausted rather than let ttrpc end the connection.
//   - A status code with no class of its own comes back as ErrUnknown; its
//     original status (code, message, details) stays reachable through
//     status.FromError.
package errdefs
