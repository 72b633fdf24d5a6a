// Package integration runs berth's binaries end to end, as root, with real
// runc, overlayfs and processes.
package integration

import (
	"os"
	"testing"

	"github.com/berthrt/berth/internal/testutil"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.Cleanup()
	os.Exit(code)
}
