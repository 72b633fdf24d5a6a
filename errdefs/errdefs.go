package errdefs

import "errors"

// The error classes. Wrap them with %w; never compare error strings.
var (
	// ErrNotFound: the named object does not exist (in this namespace).
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: an object with that name exists already.
	ErrAlreadyExists = errors.New("already exists")
	// ErrInvalidArgument: the request is malformed whatever the state.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrFailedPrecondition: the request is valid but the object is not in
	// a state that allows it (e.g. deleting a running task).
	ErrFailedPrecondition = errors.New("failed precondition")
	// ErrUnavailable: the service or resource is not reachable now; the
	// caller may retry later.
	ErrUnavailable = errors.New("unavailable")
	// ErrNotImplemented: the operation is not supported by this build,
	// runtime or snapshotter.
	ErrNotImplemented = errors.New("not implemented")
	// ErrResourceExhausted: the request passes a bound of the server (a
	// reply too large for one message, say); the error says which and what
	// to do instead.
	ErrResourceExhausted = errors.New("resource exhausted")
	// ErrPermissionDenied: the caller may not do this.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrInternal: an invariant broke inside berth; a bug.
	ErrInternal = errors.New("internal")
	// ErrUnknown: the cause could not be classified.
	ErrUnknown = errors.New("unknown")
)

// IsNotFound reports whether err is of class ErrNotFound.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// IsAlreadyExists reports whether err is of class ErrAlreadyExists.
func IsAlreadyExists(err error) bool { return errors.Is(err, ErrAlreadyExists) }

// IsInvalidArgument reports whether err is of class ErrInvalidArgument.
func IsInvalidArgument(err error) bool { return errors.Is(err, ErrInvalidArgument) }

// IsFailedPrecondition reports whether err is of class ErrFailedPrecondition.
func IsFailedPrecondition(err error) bool { return errors.Is(err, ErrFailedPrecondition) }

// IsUnavailable reports whether err is of class ErrUnavailable.
func IsUnavailable(err error) bool { return errors.Is(err, ErrUnavailable) }

// IsNotImplemented reports whether err is of class ErrNotImplemented.
func IsNotImplemented(err error) bool { return errors.Is(err, ErrNotImplemented) }

// IsResourceExhausted reports whether err is of class ErrResourceExhausted.
func IsResourceExhausted(err error) bool { return errors.Is(err, ErrResourceExhausted) }

// IsPermissionDenied reports whether err is of class ErrPermissionDenied.
func IsPermissionDenied(err error) bool { return errors.Is(err, ErrPermissionDenied) }

// IsInternal reports whether err is of class ErrInternal.
func IsInternal(err error) bool { return errors.Is(err, ErrInternal) }

// IsUnknown reports whether err is of class ErrUnknown.
func IsUnknown(err error) bool { return errors.Is(err, ErrUnknown) }
