package main

import "testing"

// TestWarmRun runs both warm-ups (an image's run and a --rootfs run):
// they run beside the command, so a panic in one would end berthctl.
// Package warm tests the walk itself.
func TestWarmRun(t *testing.T) {
	warmRun(nil)
	warmRun([]string{"run", "--rootfs=/x", "id"})
}
