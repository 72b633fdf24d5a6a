package supervisor

import "time"

// SparesReady returns how many spare shims wait in the pool of s.
func SparesReady(s *Supervisor) int { return len(s.spares) }

// SetSpareRefillDelay sets how long the refill after a Create that took a
// spare waits (spareRefillDelay). Call it before Restore.
func SetSpareRefillDelay(s *Supervisor, d time.Duration) { s.refillDelay = d }

// SetSpareRefillAfterDelete sets how long the refill waits after the
// delete of a task (spareRefillAfterDelete). Call it before Restore.
func SetSpareRefillAfterDelete(s *Supervisor, d time.Duration) { s.refillSoonDelay = d }

// SetAsideShutdownDelay sets how long the shim of a deleted task waits for
// its Shutdown (asideShutdownDelay). Call it before Restore.
func SetAsideShutdownDelay(s *Supervisor, d time.Duration) { s.asideDelay = d }

// SetAsideExitWait sets how long a set-aside shim gets to exit before it
// is killed (asideExitWait). Call it before Restore.
func SetAsideExitWait(s *Supervisor, d time.Duration) { s.asideExitWait = d }
