package native

import (
	"testing"

	"github.com/berthrt/berth/snapshots"
	"github.com/berthrt/berth/storage/snapshots/testsuite"
)

func TestNative(t *testing.T) {
	testsuite.Run(t, Name, func(root string) (snapshots.Snapshotter, error) { return New(root) })
}
