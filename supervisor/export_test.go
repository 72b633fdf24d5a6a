package supervisor

// SparesReady returns how many spare shims wait in the pool of s.
func SparesReady(s *Supervisor) int { return len(s.spares) }
