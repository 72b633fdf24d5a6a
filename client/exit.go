package client

import "time"

// UnknownExitStatus is the exit code reported when the real one could not
// be learned (the wait failed).
const UnknownExitStatus = 255

// ExitStatus is how a process ended, or why waiting for it failed.
type ExitStatus struct {
	code     uint32
	exitedAt time.Time
	err      error
}

// ExitCode is the process's exit code, or 128+signal for a process killed
// by a signal; UnknownExitStatus when Error is not nil.
func (s ExitStatus) ExitCode() uint32 { return s.code }

// ExitTime is when the process exited; zero when unknown.
func (s ExitStatus) ExitTime() time.Time { return s.exitedAt }

// Error is why the status could not be learned, or nil.
func (s ExitStatus) Error() error { return s.err }

// Result returns the code, time and error together.
func (s ExitStatus) Result() (uint32, time.Time, error) { return s.code, s.exitedAt, s.err }

// exitError is the status of a wait that failed.
func exitError(err error) ExitStatus {
	return ExitStatus{code: UnknownExitStatus, err: err}
}
