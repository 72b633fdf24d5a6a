package main

import "time"

// pollInterval is how often a (re)started daemon's readiness is polled:
// short against the goals (100 ms), long enough not to steal a core from
// the daemon.
const pollInterval = time.Millisecond

// readyTimes are the moments a (re)started daemon reached, from the start
// of its process.
type readyTimes struct {
	answered time.Duration // the socket answered a first call
	serving  time.Duration // the daemon said it is ready (SERVING)
}
