package cri

import "golang.org/x/sys/unix"

// unixSignalName is the name of signal n ("SIGTERM"), "" when unknown.
func unixSignalName(n unix.Signal) string { return unix.SignalName(n) }
