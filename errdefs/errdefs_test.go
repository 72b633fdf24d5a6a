package errdefs

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		class error
		code  codes.Code
		is    func(error) bool
	}{
		{ErrNotFound, codes.NotFound, IsNotFound},
		{ErrAlreadyExists, codes.AlreadyExists, IsAlreadyExists},
		{ErrInvalidArgument, codes.InvalidArgument, IsInvalidArgument},
		{ErrFailedPrecondition, codes.FailedPrecondition, IsFailedPrecondition},
		{ErrUnavailable, codes.Unavailable, IsUnavailable},
		{ErrNotImplemented, codes.Unimplemented, IsNotImplemented},
		{ErrResourceExhausted, codes.ResourceExhausted, IsResourceExhausted},
		{ErrPermissionDenied, codes.PermissionDenied, IsPermissionDenied},
		{ErrInternal, codes.Internal, IsInternal},
		{ErrUnknown, codes.Unknown, IsUnknown},
		{context.Canceled, codes.Canceled, nil},
		{context.DeadlineExceeded, codes.DeadlineExceeded, nil},
	}
	for _, tt := range tests {
		t.Run(tt.code.String(), func(t *testing.T) {
			orig := fmt.Errorf("container %q: %w", "redis-1", tt.class)

			wire := ToTTRPC(orig)
			if got := status.Code(wire); got != tt.code {
				t.Fatalf("ToTTRPC code = %v, want %v", got, tt.code)
			}

			back := FromTTRPC(wire)
			if !errors.Is(back, tt.class) {
				t.Errorf("errors.Is(%v, %v) = false after round trip", back, tt.class)
			}
			if tt.is != nil && !tt.is(back) {
				t.Errorf("Is helper false for %v", back)
			}
			if back.Error() != orig.Error() {
				t.Errorf("message = %q, want %q", back.Error(), orig.Error())
			}
			for _, other := range tests {
				if other.class != tt.class && errors.Is(back, other.class) {
					t.Errorf("%v also matches class %v", back, other.class)
				}
			}

			// A forwarding hop converts again: nothing may change.
			again := FromTTRPC(ToTTRPC(back))
			if again.Error() != orig.Error() || !errors.Is(again, tt.class) || status.Code(ToTTRPC(again)) != tt.code {
				t.Errorf("second round trip changed the error: %v", again)
			}
		})
	}
}

func TestEdges(t *testing.T) {
	statusErr := status.Error(codes.NotFound, "gone")
	plain := errors.New("connection reset")

	tests := []struct {
		name      string
		in        error
		conv      func(error) error
		wantSame  bool // the very same error comes back
		wantNil   bool
		wantCode  codes.Code
		wantClass error
		wantMsg   string // message of the status, or Error() after FromTTRPC
	}{
		{name: "nil to", in: nil, conv: ToTTRPC, wantNil: true},
		{name: "nil from", in: nil, conv: FromTTRPC, wantNil: true},
		{name: "status unchanged", in: statusErr, conv: ToTTRPC, wantSame: true},
		{name: "plain from unchanged", in: plain, conv: FromTTRPC, wantSame: true},
		{name: "unclassified is unknown", in: plain, conv: ToTTRPC, wantCode: codes.Unknown, wantMsg: "connection reset"},
		{name: "wrapped status keeps code", in: fmt.Errorf("shim: %w", statusErr), conv: ToTTRPC, wantCode: codes.NotFound, wantMsg: "shim: rpc error: code = NotFound desc = gone"},
		{name: "unmapped code is unknown", in: status.Error(codes.DataLoss, "lost"), conv: FromTTRPC, wantCode: codes.DataLoss, wantClass: ErrUnknown, wantMsg: "lost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.conv(tt.in)
			switch {
			case tt.wantNil:
				if got != nil {
					t.Fatalf("got %v, want nil", got)
				}
				return
			case tt.wantSame:
				if got != tt.in {
					t.Fatalf("got %#v, want the input unchanged", got)
				}
				return
			}
			if c := status.Code(got); c != tt.wantCode {
				t.Errorf("code = %v, want %v", c, tt.wantCode)
			}
			if tt.wantClass != nil && !errors.Is(got, tt.wantClass) {
				t.Errorf("errors.Is(%v, %v) = false", got, tt.wantClass)
			}
			if m := status.Convert(got).Message(); m != tt.wantMsg {
				t.Errorf("message = %q, want %q", m, tt.wantMsg)
			}
		})
	}
}
