package filters

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/berthrt/berth/errdefs"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // canonical String(); "" for Always
	}{
		{"", ""},
		{"   \t", ""},
		{"name", "name"},
		{"name==foo", "name==foo"},
		{" name == foo ", "name==foo"},
		{"labels.team", "labels.team"},
		{"labels . team", "labels.team"},
		{`labels."io.berth.role"==web`, `labels."io.berth.role"==web`},
		{`labels."a b"!=""`, `labels."a b"!=""`},
		{`topic=="/tasks/exit",namespace==default`, `topic==/tasks/exit,namespace==default`},
		{`topic==/tasks/exit`, `topic==/tasks/exit`},
		{`image==docker.io/library/redis:7`, `image==docker.io/library/redis:7`},
		{`a==b==c`, `a==b==c`},
		{`a=="x,y"`, `a=="x,y"`},
		{`a=="tab\there"`, `a=="tab\there"`},
		{`a=="\u00e9t\xc3\xa9"`, `a==été`},
		{`a=="\xff"`, `a=="\xff"`},
		{`a==été`, `a==été`},
		{`"a.b"."c"`, `"a.b".c`},
		{`""==x`, `""==x`},
		{`a~=^web`, `a~=^web`},
		{`a~="^web$"`, `a~=^web$`},
		{`a~=/tasks/`, `a~=tasks`},
		{`a~=/a\/b/`, `a~=a\/b`},
		{`a~=|x\|y|`, `a~=x\|y`},
		{`a~="/x/"`, `a~="/x/"`},
		{`a==/x/`, `a==/x/`},
		{`a, b ,c==d`, `a,b,c==d`},
		{`a==\`, `a==\`},
	} {
		f, err := Parse(tc.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if got := fmt.Sprint(f); got != tc.want {
			t.Errorf("Parse(%q).String() = %q, want %q", tc.in, got, tc.want)
		}
		if tc.want == "" && f != Always {
			t.Errorf("Parse(%q) = %#v, want Always", tc.in, f)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		in     string
		offset int
		msg    string
	}{
		{"labels.a==", 10, "expected value, found end of filter"},
		{"a==,b", 3, "expected value, found ','"},
		{"a,", 2, "expected field name, found end of filter"},
		{",a", 0, "expected field name, found ','"},
		{"a.", 2, "expected field name, found end of filter"},
		{"a..b", 2, "expected field name, found '.'"},
		{"a=b", 1, "expected operator ==, != or ~=, found '='"},
		{"a@=b", 1, "expected operator"},
		{"a<b", 1, "expected operator"},
		{"a b", 2, "expected ',' or end of filter, found 'b'"},
		{"a==b c", 5, "expected ',' or end of filter, found 'c'"},
		{"a==b\"c", 4, "expected ',' or end of filter, found '\"'"},
		{"a==\x00", 3, "expected value, found '\\x00'"},
		{"/a/", 0, "expected field name, found '/'"},
		{`a=="x`, 3, "quoted string not terminated"},
		{`"a`, 0, "quoted string not terminated"},
		{`a=="\q"`, 4, "invalid escape"},
		{"a==\"x\ny\"", 5, "control character U+000A"},
		{`a~=/x`, 3, "regexp not terminated"},
		{`a~=/x\/`, 3, "regexp not terminated"},
		{"a~=/x\ty/", 5, "control character U+0009"},
		{`a~=(`, 3, "invalid regexp"},
		{`a~="x{2,1}"`, 3, "invalid regexp"},
		{`a~=/x/y`, 6, "expected ',' or end of filter, found 'y'"},
		{"a==\xff", 3, "invalid UTF-8"},
		{"a~=" + strings.Repeat("x", MaxRegexpLength+1), 3, "longer than 1024"},
		{strings.Repeat("a", MaxFilterLength+1), MaxFilterLength, "longer than 4096"},
		{`a~=.{999}x{9}`, 3, "regexp too complex"},
		{`a~=.{600},b~=.{600}`, 13, "regexp too complex"},
		{`a~=\pL{1000}`, 3, "regexp too complex"},
	} {
		_, err := Parse(tc.in)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("Parse(%q) = %v, want a *SyntaxError", tc.in, err)
			continue
		}
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Parse(%q): %v does not wrap ErrInvalidArgument", tc.in, err)
		}
		if se.Offset != tc.offset || !strings.Contains(se.Msg, tc.msg) {
			t.Errorf("Parse(%q) = at %d %q, want at %d %q", tc.in, se.Offset, se.Msg, tc.offset, tc.msg)
		}
	}
}

func TestSyntaxErrorMessage(t *testing.T) {
	_, err := Parse("labels.a==")
	if want := "filters: at 10 in `labels.a==`: expected value, found end of filter"; err.Error() != want {
		t.Errorf("got  %s\nwant %s", err, want)
	}
	_, err = Parse("a==`x` y")
	if want := "filters: at 7 in \"a==`x` y\": expected ',' or end of filter, found 'y'"; err.Error() != want {
		t.Errorf("got  %s\nwant %s", err, want)
	}
	long := strings.Repeat("a", 100) + " b" + strings.Repeat("c", 100)
	_, err = Parse(long)
	want := "filters: at 101 in …`" + strings.Repeat("a", 31) + " b" + strings.Repeat("c", 31) + "`…: expected ',' or end of filter, found 'b'"
	if err.Error() != want {
		t.Errorf("got  %s\nwant %s", err, want)
	}
}

func TestParseAll(t *testing.T) {
	f, err := ParseAll()
	if err != nil || f != Always {
		t.Errorf("ParseAll() = %v, %v; want Always", f, err)
	}
	f, err = ParseAll("", " ")
	if err != nil || f != Always {
		t.Errorf(`ParseAll("", " ") = %v, %v; want Always`, f, err)
	}
	// An empty string does not widen the others to everything.
	f, err = ParseAll("", "a==1")
	if err != nil {
		t.Fatal(err)
	}
	if f.Match(fields{"a": "2"}) || !f.Match(fields{"a": "1"}) {
		t.Errorf(`ParseAll("", "a==1") matches as if it were not a==1`)
	}
	f, err = ParseAll("a==1", "b")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		obj  fields
		want bool
	}{
		{fields{"a": "1"}, true},
		{fields{"b": ""}, true},
		{fields{"a": "2"}, false},
		{fields{}, false},
	} {
		if got := f.Match(tc.obj); got != tc.want {
			t.Errorf("a==1 or b: Match(%v) = %v, want %v", tc.obj, got, tc.want)
		}
	}
	if _, err := ParseAll("a", "b=c"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("ParseAll with a bad filter = %v, want invalid argument", err)
	}
	if _, err := ParseAll(`a~=.{600}`, `b~=.{600}`); !errdefs.IsInvalidArgument(err) {
		t.Errorf("ParseAll over the regexp budget = %v, want invalid argument", err)
	}
	if _, err := ParseAll(`a~=.{400}`, `b~=.{400}`); err != nil {
		t.Errorf("ParseAll within the regexp budget: %v", err)
	}
	if _, err := ParseAll(make([]string, MaxFilters+1)...); !errdefs.IsInvalidArgument(err) {
		t.Errorf("ParseAll with %d filters = %v, want invalid argument", MaxFilters+1, err)
	}
}
