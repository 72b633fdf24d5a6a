package filters

import (
	"strings"
	"testing"
)

// fields is a test object: each key is a whole dotted field path.
type fields map[string]string

func (f fields) Field(fieldpath []string) (string, bool) {
	v, ok := f[strings.Join(fieldpath, ".")]
	return v, ok
}

func TestMatch(t *testing.T) {
	web := fields{"name": "redis-1", "image": "docker.io/library/redis:7", "labels.role": "web", "labels.io.berth.tier": "front", "empty": ""}
	bare := fields{"name": "busybox"}
	for _, tc := range []struct {
		filter    string
		web, bare bool
	}{
		{"", true, true},
		{"name", true, true},
		{"labels.role", true, false},
		{"empty", true, false},
		{"name==redis-1", true, false},
		{"name!=redis-1", false, true},
		// != is the negation of ==: an absent field is "not web".
		{"labels.role!=web", false, true},
		{"labels.role==web", true, false},
		{`labels.role!=""`, true, true},
		{`empty==""`, true, false},
		{`empty!=""`, false, true},
		// A regexp never matches an absent field, not even one that
		// matches the empty string.
		{`labels.role~=^$`, false, false},
		{`labels.role~=.*`, true, false},
		{`empty~=^$`, true, false},
		{`image~=redis`, true, false},
		{`image~=^redis`, false, false},
		{`name~=/^(redis|busy)/`, true, true},
		{`labels."io.berth.tier"==front`, true, false},
		{`labels.io.berth.tier==front`, true, false},
		{`name==redis-1,labels.role==web`, true, false},
		{`name==redis-1,labels.role==db`, false, false},
		{`missing`, false, false},
		{`missing!=x`, true, true},
	} {
		f, err := Parse(tc.filter)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.filter, err)
			continue
		}
		if got := f.Match(web); got != tc.web {
			t.Errorf("%q on web = %v, want %v", tc.filter, got, tc.web)
		}
		if got := f.Match(bare); got != tc.bare {
			t.Errorf("%q on bare = %v, want %v", tc.filter, got, tc.bare)
		}
	}
}

func TestHelpers(t *testing.T) {
	labels := map[string]string{"io.berth.role": "web", "team": ""}
	a := AdapterFunc(func(fieldpath []string) (string, bool) {
		switch fieldpath[0] {
		case "id":
			return Value("c1", fieldpath[1:])
		case "image":
			return Value("", fieldpath[1:])
		case "labels":
			return Labels(labels, fieldpath[1:])
		}
		return "", false
	})
	for _, tc := range []struct {
		filter string
		want   bool
	}{
		{"id==c1", true},
		{"id.x", false},
		{`image==""`, true},
		{"labels", false},
		{"labels.team", true},
		{"labels.io.berth.role==web", true},
		{`labels."io.berth.role"==web`, true},
		{`labels."io.berth".role==web`, true},
		{"labels.io", false},
		{"other", false},
	} {
		f, err := Parse(tc.filter)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.filter, err)
		}
		if got := f.Match(a); got != tc.want {
			t.Errorf("%q = %v, want %v", tc.filter, got, tc.want)
		}
	}
}
