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

// A restored daemon holds every name a set-aside folder may stand for
// until that folder's release (which may still run `runc delete --force`
// on each of those ids) is done. A restored task of one of those names
// that this daemon deletes holds the name too, over it: freeing that
// newer hold must give the name back to the folder's hold, not free it,
// or a new task of the name could be created while the folder's release
// kills and deletes that id's container in the runtime.
func TestAsideHoldOutlivesNewerHold(t *testing.T) {
	for _, folderFirst := range []bool{false, true} {
		s := &Supervisor{shims: map[key]*Shim{}, asides: map[key]*aside{}}
		names := asideNames("a.b.c.1.1") // (a, b.c) and (a.b, c)
		release := s.holdRestoredNames([][]key{names})
		folder := s.asides[key{"a.b", "c"}]
		sh := &Shim{Namespace: "a.b", ID: "c"}
		deleted := s.removeAside(sh)
		if folderFirst {
			release(names)
			if got := s.asides[key{"a.b", "c"}]; got != deleted {
				t.Fatalf("folder freed first: name (a.b, c) held by %p, want the delete's %p", got, deleted)
			}
			if _, ok := s.asides[key{"a", "b.c"}]; ok {
				t.Fatalf("folder freed first: name (a, b.c) still held")
			}
			s.asideGone(sh, deleted)
		} else {
			s.asideGone(sh, deleted)
			if got := s.asides[key{"a.b", "c"}]; got != folder {
				t.Fatalf("delete freed first: name (a.b, c) held by %p, want the folder's %p", got, folder)
			}
			release(names)
		}
		if len(s.asides) != 0 {
			t.Errorf("folderFirst=%v: names still held after both were freed: %v", folderFirst, s.asides)
		}
	}
}
