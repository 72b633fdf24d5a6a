package native

import (
	"testing"

	"github.com/berthrt/berth/snapshots"
	"github.com/berthrt/berth/storage/snapshots/snapshotstest"
)

func TestNativeSuite(t *testing.T) {
	snapshotstest.Run(t, Name, func(root string) (snapshots.Snapshotter, error) { return New(root) })
}
