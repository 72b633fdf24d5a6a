package supervisor

import (
	"slices"
	"testing"
)

// The name of a set-aside folder gives back every task name it may stand
// for: a namespace and an id may both hold dots.
func TestAsideNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		want []key
	}{
		{"default.web.1733536000000000000.7", []key{{"default", "web"}}},
		{"k8s.io.pod-1.12.3", []key{{"k8s", "io.pod-1"}, {"k8s.io", "pod-1"}}},
		{"a.b.c.d.1.2", []key{{"a", "b.c.d"}, {"a.b", "c.d"}, {"a.b.c", "d"}}},
		{"default.web.12", nil},   // one number only
		{"default.web.x.1", nil},  // not a number
		{"default.web.1.", nil},   // empty number
		{"web.1.2", nil},          // no id
		{"default..web.1.2", nil}, // not identifiers
		{".tmp-folder", nil},      // anything else
	} {
		if got := asideNames(tc.name); !slices.Equal(got, tc.want) {
			t.Errorf("asideNames(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}
