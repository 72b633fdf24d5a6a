package filters

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
)

// FuzzParse checks that Parse never panics, that it fails only with a
// *SyntaxError, and that a parsed filter's String() parses back to the
// same filter, whose String() is the same again.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"", "name==foo", `labels."io.berth.role"~="^web"`, "image!=busybox", "labels.team",
		`topic=="/tasks/exit",namespace==default`, `a~=/x\/y/`, `a~=|x|`, `a=="\xff\u00e9"`,
		"a , b.c . d != e", `a==b==c`, `"".""==""`, "a=b", "a==", `a=="x`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		flt, err := Parse(s)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse(%q) = %v, not a *SyntaxError", s, err)
			}
			if se.Offset < 0 || se.Offset > len(s) {
				t.Fatalf("Parse(%q): offset %d outside the input", s, se.Offset)
			}
			_ = err.Error()
			return
		}
		canon := fmt.Sprint(flt)
		again, err := Parse(canon)
		if err != nil {
			t.Fatalf("Parse(%q) ok, but its String %q does not parse: %v", s, canon, err)
		}
		if got := fmt.Sprint(again); got != canon {
			t.Fatalf("String not stable: %q → %q → %q", s, canon, got)
		}
		if !reflect.DeepEqual(shape(flt), shape(again)) {
			t.Fatalf("%q and its String %q parse differently:\n%#v\n%#v", s, canon, shape(flt), shape(again))
		}
	})
}

// shape is a filter without its compiled regexps, for comparison.
func shape(f Filter) []selector {
	c, _ := f.(conjunction)
	out := make([]selector, len(c))
	for i, s := range c {
		s.re = nil
		out[i] = s
	}
	return out
}
