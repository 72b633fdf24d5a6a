package errdefs

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// classCodes is the one table between classes and status codes, used in
// both directions. Order matters for ToTTRPC: the first class an error
// matches decides its code.
var classCodes = []struct {
	class error
	code  codes.Code
}{
	{ErrNotFound, codes.NotFound},
	{ErrAlreadyExists, codes.AlreadyExists},
	{ErrInvalidArgument, codes.InvalidArgument},
	{ErrFailedPrecondition, codes.FailedPrecondition},
	{ErrUnavailable, codes.Unavailable},
	{ErrNotImplemented, codes.Unimplemented},
	{ErrResourceExhausted, codes.ResourceExhausted},
	{ErrPermissionDenied, codes.PermissionDenied},
	{ErrInternal, codes.Internal},
	{ErrUnknown, codes.Unknown},
	{context.Canceled, codes.Canceled},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
}

// grpcStatus is implemented by status errors (and by remoteError).
type grpcStatus interface{ GRPCStatus() *status.Status }

// ToTTRPC converts err into a status error for a ttrpc reply: the code of
// its class (Unknown if it has none) and err.Error() as the message. nil
// stays nil; a status error is returned unchanged; an error that wraps a
// status error keeps that code and takes its full text as the message.
func ToTTRPC(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(grpcStatus); ok {
		return err
	}
	if s, ok := status.FromError(err); ok {
		return s.Err()
	}
	return status.Error(codeOf(err), err.Error())
}

// FromTTRPC converts an error returned by a ttrpc call back into one that
// wraps the class of its status code, so errors.Is works, and whose Error()
// is exactly the server's message. nil stays nil; an error that carries no
// status (a local transport error, say) is returned unchanged.
func FromTTRPC(err error) error {
	if err == nil {
		return nil
	}
	s, ok := status.FromError(err)
	if !ok {
		return err
	}
	return &remoteError{status: s, class: classOf(s.Code())}
}

// remoteError is an error received over ttrpc: the server's message, the
// class it was sent as, and the original status for whoever needs details.
type remoteError struct {
	status *status.Status
	class  error
}

func (e *remoteError) Error() string              { return e.status.Message() }
func (e *remoteError) Unwrap() error              { return e.class }
func (e *remoteError) GRPCStatus() *status.Status { return e.status }

func codeOf(err error) codes.Code {
	for _, cc := range classCodes {
		if errors.Is(err, cc.class) {
			return cc.code
		}
	}
	return codes.Unknown
}

func classOf(code codes.Code) error {
	for _, cc := range classCodes {
		if cc.code == code {
			return cc.class
		}
	}
	return ErrUnknown
}
