package content_test

import (
	"testing"

	"github.com/berthrt/berth/storage/content"
	"github.com/berthrt/berth/storage/content/contenttest"
)

func TestLocalStore(t *testing.T) {
	contenttest.Run(t, func(t *testing.T) content.Store {
		s, err := content.NewStore(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, contenttest.Options{})
}
