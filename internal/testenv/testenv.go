// Package testenv is the one rule for a test whose environment is
// incomplete: it fails in CI (CI set), and skips elsewhere saying why.
// It imports nothing of berth, so that the tests of every package, even
// those internal/testutil builds on (oci), can use it; testutil's Require
// and RequireRoot are this package's.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run in CI, where a missing environment is
// a failure, not a reason to skip.
func InCI() bool { return os.Getenv("CI") != "" }

// Require fails the test in CI and skips it elsewhere when ok is false.
func Require(t testing.TB, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if InCI() {
		t.Fatalf("test environment incomplete in CI: %s", why)
	}
	t.Skipf("skipped outside CI: %s", why)
}

// RequireRoot requires root and the given commands in PATH.
func RequireRoot(t testing.TB, commands ...string) {
	t.Helper()
	Require(t, os.Geteuid() == 0, "needs root (mounts, runc)")
	RequireCommands(t, commands...)
}

// RequireCommands requires the given commands in PATH.
func RequireCommands(t testing.TB, commands ...string) {
	t.Helper()
	for _, c := range commands {
		_, err := exec.LookPath(c)
		Require(t, err == nil, c+" not found in PATH (run make deps)")
	}
}
