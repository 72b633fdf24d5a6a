// Package integration runs berth's binaries end to end, as root, with real
// runc, overlayfs and processes.
package integration

import (
	"os"
	"testing"

	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/snapshots/proxy/proxytest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.Cleanup()
	proxytest.Cleanup()
	os.Exit(code)
}
