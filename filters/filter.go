// Package filters parses and evaluates the filter syntax containerd users
// know, used by every List call and by event subscriptions:
//
//	topic=="/tasks/exit",namespace==default   two conditions, both must hold
//	labels."io.berth.role"~="^web"            a quoted field name, a regexp
//	image!=busybox                            inequality
//	labels.team                               presence
//
// One filter string is a conjunction (","); several strings are a
// disjunction: an object matches when any one of them matches.
//
// # Syntax
//
//	filter    = [ selector { "," selector } ]
//	selector  = fieldpath [ operator value ]
//	fieldpath = part { "." part }
//	part      = name | quoted
//	name      = 1*( "A"…"Z" | "a"…"z" | "0"…"9" | "_" | "-" )
//	operator  = "==" | "!=" | "~="
//	value     = quoted | bare | delimited     (delimited after "~=" only)
//	quoted    = `"` characters with Go escapes (\" \\ \n \t \xHH \u00e9 …) `"`
//	bare      = 1* any printable character but "," `"` and white space
//	delimited = "/" regexp "/" | "|" regexp "|"
//
// White space may stand around every token. A bare value runs to the next
// ",", space or end, so image==docker.io/library/redis:7 needs no quotes,
// and an empty value must be written "". Inside a delimited regexp a
// backslash keeps the next character from ending it and stays in the
// pattern (`~=/a\/b/` is the regexp `a\/b`, which matches "a/b"). Regexps
// are Go RE2: matching is linear in the input, never exponential.
//
// The empty filter (or one of white space only) matches everything.
// A filter is at most MaxFilterLength bytes, a regexp at most
// MaxRegexpLength bytes, ParseAll takes at most MaxFilters strings, and
// the regexps of one Parse or ParseAll call together compile to at most
// MaxRegexpProgram RE2 instructions, which bounds the cost of a match per
// byte of field; larger input is refused rather than parsed.
//
// # Matching
//
// An Adaptor reports each field as (value, present). The rule is that a
// selector on an absent field does not match, with one exception:
//
//	fieldpath           present
//	fieldpath==v        present and value is v
//	fieldpath!=v        absent, or value is not v: exactly "not (fieldpath==v)"
//	fieldpath~=re       present and value matches re (unanchored: use ^…$)
//
// So labels.role!=web selects the objects without the label as well, the
// way a user excluding web reads it. This differs from containerd in two
// corners, on purpose: containerd compares an absent field as if it were
// "" for != and ~=, so there labels.role!="" does not select objects
// without the label and labels.role~="^$" does. Here != is the exact
// negation of ==, and a regexp never matches a field that is not there.
//
// Presence is the Adaptor's to say. The helpers in this package (Value,
// Labels) make a scalar field present whenever the path names it, even
// when its value is empty (image=="" finds objects without an image; in
// containerd an empty string is absent), and a map entry present when the
// key exists.
package filters

import "strings"

// Adaptor exposes the fields of one object to a filter. fieldpath is the
// dotted path split into its parts (labels."a.b" is ["labels", "a.b"]).
// present is false when the object has no such field.
type Adaptor interface {
	Field(fieldpath []string) (value string, present bool)
}

// AdapterFunc makes a function an Adaptor.
type AdapterFunc func(fieldpath []string) (string, bool)

// Field calls f.
func (f AdapterFunc) Field(fieldpath []string) (string, bool) { return f(fieldpath) }

// Filter decides whether an object matches.
type Filter interface {
	Match(Adaptor) bool
}

// Always matches every object. It is what Parse returns for the empty
// filter and ParseAll for no filters.
var Always Filter = always{}

type always struct{}

func (always) Match(Adaptor) bool { return true }

// String returns the empty filter, which parses back to Always.
func (always) String() string { return "" }

// conjunction is one parsed filter string: every selector must match.
type conjunction []selector

func (c conjunction) Match(a Adaptor) bool {
	for _, s := range c {
		if !s.Match(a) {
			return false
		}
	}
	return true
}

// String returns the filter in canonical form: no white space, field path
// parts and values quoted only where they must be. It parses back to an
// equivalent filter.
func (c conjunction) String() string {
	var b strings.Builder
	for i, s := range c {
		if i > 0 {
			b.WriteByte(',')
		}
		s.writeTo(&b)
	}
	return b.String()
}

// disjunction is the result of ParseAll with several filters: any one
// must match.
type disjunction []Filter

func (d disjunction) Match(a Adaptor) bool {
	for _, f := range d {
		if f.Match(a) {
			return true
		}
	}
	return false
}
