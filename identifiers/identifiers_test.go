package identifiers

import (
	"strings"
	"testing"

	"github.com/berthrt/berth/errdefs"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"a", true},
		{"redis-1", true},
		{"a.b_c-d", true},
		{strings.Repeat("x", MaxLength), true},
		{"", false},
		{strings.Repeat("x", MaxLength+1), false},
		{"../x", false},
		{"a/b", false},
		{"..", false},
		{".hidden", false},
		{"trailing-", false},
		{"a..b", false},
		{"nul\x00", false},
		{"space here", false},
		{"ünï", false},
	} {
		err := Validate(tc.id)
		if tc.ok && err != nil {
			t.Errorf("Validate(%q) = %v, want ok", tc.id, err)
		}
		if !tc.ok && !errdefs.IsInvalidArgument(err) {
			t.Errorf("Validate(%q) = %v, want invalid argument", tc.id, err)
		}
	}
}

func FuzzValidate(f *testing.F) {
	for _, s := range []string{"a", "../x", "a.b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if Validate(s) != nil {
			return
		}
		if strings.ContainsAny(s, "/\x00") || strings.Contains(s, "..") || len(s) > MaxLength {
			t.Fatalf("accepted %q", s)
		}
	})
}
