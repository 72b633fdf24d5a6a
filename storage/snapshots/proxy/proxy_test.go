package proxy_test

import (
	"testing"

	"github.com/berthrt/berth/storage/snapshots/proxy/proxytest"
	"github.com/berthrt/berth/storage/snapshots/testsuite"
)

// The shared suite against the native snapshotter served by the external
// program, reached through proxy.New.
func TestProxySuite(t *testing.T) {
	testsuite.Run(t, "proxy", proxytest.Open(t))
}
