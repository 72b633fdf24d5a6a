package identifiers

import (
	"regexp"
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

// oracle is the grammar valid implements by hand.
var oracle = regexp.MustCompile(`^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$`)

func FuzzValidate(f *testing.F) {
	for _, s := range []string{"a", "../x", "a.b", "", "a..b", "-a", "a-", "a._b", "A9-z.0_x", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := valid(s), oracle.MatchString(s); got != want {
			t.Fatalf("valid(%q) = %v, the regexp says %v", s, got, want)
		}
		if Validate(s) != nil {
			return
		}
		if strings.ContainsAny(s, "/\x00") || strings.Contains(s, "..") || len(s) > MaxLength {
			t.Fatalf("accepted %q", s)
		}
	})
}
