package filters

import (
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

type operator uint8

const (
	opPresent  operator = iota // no operator: the field is present
	opEqual                    // ==
	opNotEqual                 // !=
	opMatch                    // ~=
)

func (op operator) String() string {
	switch op {
	case opEqual:
		return "=="
	case opNotEqual:
		return "!="
	case opMatch:
		return "~="
	}
	return ""
}

// selector is one condition on one field.
type selector struct {
	fieldpath []string
	op        operator
	value     string         // the operand, unquoted; for opMatch the pattern
	re        *regexp.Regexp // compiled value, for opMatch only
}

// Match applies the rules of the package documentation: absent fields
// match only !=.
func (s selector) Match(a Adaptor) bool {
	v, present := a.Field(s.fieldpath)
	switch s.op {
	case opPresent:
		return present
	case opEqual:
		return present && v == s.value
	case opNotEqual:
		return !present || v != s.value
	case opMatch:
		return present && s.re.MatchString(v)
	}
	return false
}

func (s selector) writeTo(b *strings.Builder) {
	for i, part := range s.fieldpath {
		if i > 0 {
			b.WriteByte('.')
		}
		if isName(part) {
			b.WriteString(part)
		} else {
			b.WriteString(strconv.Quote(part))
		}
	}
	if s.op == opPresent {
		return
	}
	b.WriteString(s.op.String())
	if isBare(s.value) && (s.op != opMatch || !isRegexpDelimiter(s.value[0])) {
		b.WriteString(s.value)
	} else {
		b.WriteString(strconv.Quote(s.value))
	}
}

// isNameByte reports whether c may stand in an unquoted field path part.
func isNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

func isName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isNameByte(s[i]) {
			return false
		}
	}
	return true
}

// isBareRune reports whether r may stand in an unquoted value.
func isBareRune(r rune) bool {
	return r != ',' && r != '"' && !unicode.IsSpace(r) && unicode.IsGraphic(r)
}

func isBare(s string) bool {
	if s == "" || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !isBareRune(r) {
			return false
		}
	}
	return true
}

func isRegexpDelimiter(c byte) bool { return c == '/' || c == '|' }
