package proxy_test

import (
	"os"
	"testing"

	"github.com/berthrt/berth/snapshots/proxy/proxytest"
	"github.com/berthrt/berth/storage/snapshots/snapshotstest"
)

// The shared suite against the native snapshotter served by the external
// program, reached through proxy.New.
func TestProxySuite(t *testing.T) {
	snapshotstest.Run(t, "proxy", proxytest.Open(t))
}

func TestMain(m *testing.M) {
	code := m.Run()
	proxytest.Cleanup()
	os.Exit(code)
}
