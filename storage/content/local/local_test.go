package local_test

import (
	"testing"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/storage/content/contenttest"
	"github.com/berthrt/berth/storage/content/local"
)

func TestLocalContentSuite(t *testing.T) {
	contenttest.Run(t, func(t *testing.T) content.Store {
		s, err := local.NewStore(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, contenttest.Options{Reread: true})
}
