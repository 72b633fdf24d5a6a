package filters

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/berthrt/berth/errdefs"
)

// Bounds on input, so that a hostile filter costs little to refuse.
const (
	// MaxFilterLength is the longest filter string Parse reads, in bytes.
	MaxFilterLength = 4 << 10
	// MaxRegexpLength is the longest pattern of one ~= selector, in bytes.
	MaxRegexpLength = 1 << 10
	// MaxRegexpProgram bounds what the regexps of one Parse or ParseAll
	// call compile to, together, in RE2 instructions: matching costs up to
	// this many steps per byte of a field, and a short pattern can compile
	// to a long program (.{1000} is about a thousand instructions).
	MaxRegexpProgram = 1000
	// MaxFilters is how many filter strings ParseAll takes at most.
	MaxFilters = 64
)

// SyntaxError is the error Parse returns for a filter it cannot read. It
// wraps errdefs.ErrInvalidArgument.
type SyntaxError struct {
	Filter string // the filter as given
	Offset int    // where the problem is: a byte offset into Filter, from 0
	Msg    string // what was expected, and what was found instead
}

// Error reads "filters: at 10 in `labels.a==`: expected value, found end
// of filter". Long filters are shown as the part around Offset.
func (e *SyntaxError) Error() string {
	return fmt.Sprintf("filters: at %d in %s: %s", e.Offset, excerpt(e.Filter, e.Offset), e.Msg)
}

// Unwrap returns errdefs.ErrInvalidArgument.
func (e *SyntaxError) Unwrap() error { return errdefs.ErrInvalidArgument }

// Parse parses one filter string: selectors joined by "," that must all
// match. The empty string, or one of white space only, gives Always. The
// package documentation has the syntax and the matching rules.
func Parse(s string) (Filter, error) {
	budget := MaxRegexpProgram
	return parse(s, &budget)
}

// parse parses one filter string; its regexps compile to at most *budget
// instructions, which it lowers by what they take.
func parse(s string, budget *int) (Filter, error) {
	if len(s) > MaxFilterLength {
		return nil, &SyntaxError{Filter: s, Offset: MaxFilterLength,
			Msg: fmt.Sprintf("filter of %d bytes is longer than %d", len(s), MaxFilterLength)}
	}
	p := parser{input: s, budget: budget}
	if !utf8.ValidString(s) {
		for p.pos < len(s) {
			if r, n := utf8.DecodeRuneInString(s[p.pos:]); r == utf8.RuneError && n == 1 {
				break
			}
			p.pos++
		}
		return nil, p.errorf("invalid UTF-8")
	}
	p.skipSpace()
	if p.eof() {
		return Always, nil
	}
	var c conjunction
	for {
		sel, err := p.selector()
		if err != nil {
			return nil, err
		}
		c = append(c, sel)
		p.skipSpace()
		if p.eof() {
			return c, nil
		}
		if p.peek() != ',' {
			return nil, p.errorf("expected ',' or end of filter, found %s", p.found())
		}
		p.pos++
		p.skipSpace()
	}
}

// ParseAll parses several filter strings, of which any one must match.
// Empty strings add nothing: they are how an unset flag or field arrives.
// With no strings, or only empty ones, the result is Always.
func ParseAll(ss ...string) (Filter, error) {
	if len(ss) > MaxFilters {
		return nil, fmt.Errorf("filters: %d filters are more than %d: %w", len(ss), MaxFilters, errdefs.ErrInvalidArgument)
	}
	var d disjunction
	budget := MaxRegexpProgram
	for _, s := range ss {
		f, err := parse(s, &budget)
		if err != nil {
			return nil, err
		}
		if f != Always {
			d = append(d, f)
		}
	}
	switch len(d) {
	case 0:
		return Always, nil
	case 1:
		return d[0], nil
	}
	return d, nil
}

// parser reads one filter string; pos only moves forward.
type parser struct {
	input  string
	pos    int
	budget *int // RE2 instructions the regexps still to come may take
}

func (p *parser) selector() (selector, error) {
	var sel selector
	for {
		part, err := p.fieldPart()
		if err != nil {
			return sel, err
		}
		sel.fieldpath = append(sel.fieldpath, part)
		p.skipSpace()
		if p.peek() != '.' {
			break
		}
		p.pos++
		p.skipSpace()
	}

	switch {
	case strings.HasPrefix(p.input[p.pos:], "=="):
		sel.op = opEqual
	case strings.HasPrefix(p.input[p.pos:], "!="):
		sel.op = opNotEqual
	case strings.HasPrefix(p.input[p.pos:], "~="):
		sel.op = opMatch
	case strings.ContainsRune("=!~<>@", rune(p.peek())):
		return sel, p.errorf("expected operator ==, != or ~=, found %s", p.found())
	default:
		return sel, nil // presence; the caller checks what follows
	}
	p.pos += 2
	p.skipSpace()

	start := p.pos
	var err error
	switch c := p.peek(); {
	case p.eof() || c == ',':
		return sel, p.errorf("expected value, found %s", p.found())
	case c == '"':
		sel.value, err = p.quoted()
	case sel.op == opMatch && isRegexpDelimiter(c):
		sel.value, err = p.delimited()
	default:
		sel.value = p.bare()
		if sel.value == "" {
			return sel, p.errorf("expected value, found %s", p.found())
		}
	}
	if err != nil {
		return sel, err
	}

	if sel.op == opMatch {
		if len(sel.value) > MaxRegexpLength {
			return sel, p.errorAt(start, "regexp of %d bytes is longer than %d", len(sel.value), MaxRegexpLength)
		}
		sel.re, err = p.compile(sel.value)
		if err != nil {
			return sel, p.errorAt(start, "%v", err)
		}
	}
	return sel, nil
}

// compile compiles a regexp if its program fits in what is left of the
// budget, and takes it from the budget.
func (p *parser) compile(pattern string) (*regexp.Regexp, error) {
	tree, err := syntax.Parse(pattern, syntax.Perl) // the flags of regexp.Compile
	if err != nil {
		return nil, fmt.Errorf("invalid regexp: %w", err)
	}
	prog, err := syntax.Compile(tree.Simplify())
	if err != nil {
		return nil, fmt.Errorf("invalid regexp: %w", err)
	}
	if n := len(prog.Inst); n > *p.budget {
		return nil, fmt.Errorf("regexp too complex: it compiles to %d instructions, and the regexps of a filter may take %d in all (%d left)",
			n, MaxRegexpProgram, *p.budget)
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("invalid regexp: %w", err)
	}
	*p.budget -= len(prog.Inst)
	return re, nil
}

func (p *parser) fieldPart() (string, error) {
	if p.peek() == '"' {
		return p.quoted()
	}
	start := p.pos
	for !p.eof() && isNameByte(p.input[p.pos]) {
		p.pos++
	}
	if p.pos == start {
		return "", p.errorf("expected field name, found %s", p.found())
	}
	return p.input[start:p.pos], nil
}

// quoted reads a string in double quotes with Go's escapes.
func (p *parser) quoted() (string, error) {
	start := p.pos
	p.pos++ // the opening quote
	var b strings.Builder
	for {
		if p.eof() {
			return "", p.errorAt(start, "quoted string not terminated")
		}
		rest := p.input[p.pos:]
		if rest[0] == '"' {
			p.pos++
			return b.String(), nil
		}
		if r, _ := utf8.DecodeRuneInString(rest); unicode.IsControl(r) {
			return "", p.errorf("control character %U in quoted string: write it as an escape", r)
		}
		r, multibyte, tail, err := strconv.UnquoteChar(rest, '"')
		if err != nil {
			return "", p.errorf("invalid escape in quoted string")
		}
		if r < utf8.RuneSelf || !multibyte {
			b.WriteByte(byte(r))
		} else {
			b.WriteRune(r)
		}
		p.pos += len(rest) - len(tail)
	}
}

// delimited reads a regexp between two '/' or two '|'. A backslash keeps
// the character after it from ending the regexp; both stay in the pattern.
func (p *parser) delimited() (string, error) {
	start := p.pos
	delim := p.input[p.pos]
	p.pos++
	for !p.eof() {
		c := p.input[p.pos]
		switch {
		case c == delim:
			p.pos++
			return p.input[start+1 : p.pos-1], nil
		case c < ' ' || c == 0x7f:
			return "", p.errorf("control character %U in regexp: write it as an escape", rune(c))
		case c == '\\' && p.pos+1 < len(p.input):
			p.pos += 2
		default:
			p.pos++
		}
	}
	return "", p.errorAt(start, "regexp not terminated: expected closing %q", delim)
}

// bare reads an unquoted value, which may be empty.
func (p *parser) bare() string {
	start := p.pos
	for !p.eof() {
		r, n := utf8.DecodeRuneInString(p.input[p.pos:])
		if !isBareRune(r) {
			break
		}
		p.pos += n
	}
	return p.input[start:p.pos]
}

func (p *parser) skipSpace() {
	for !p.eof() {
		r, n := utf8.DecodeRuneInString(p.input[p.pos:])
		if !unicode.IsSpace(r) {
			return
		}
		p.pos += n
	}
}

func (p *parser) eof() bool { return p.pos >= len(p.input) }

// peek returns the byte at pos, or 0 at the end.
func (p *parser) peek() byte {
	if p.eof() {
		return 0
	}
	return p.input[p.pos]
}

// found names what stands at pos, for error messages.
func (p *parser) found() string {
	if p.eof() {
		return "end of filter"
	}
	r, _ := utf8.DecodeRuneInString(p.input[p.pos:])
	return strconv.QuoteRune(r)
}

func (p *parser) errorf(format string, args ...any) error {
	return p.errorAt(p.pos, format, args...)
}

func (p *parser) errorAt(offset int, format string, args ...any) error {
	return &SyntaxError{Filter: p.input, Offset: offset, Msg: fmt.Sprintf(format, args...)}
}

// excerptRadius is how many bytes around the offset an error shows of a
// long filter.
const excerptRadius = 32

// excerpt shows s for an error message: in backquotes when it prints as
// it is, else Go-quoted; cut to the part around offset when long.
func excerpt(s string, offset int) string {
	var pre, post string
	if len(s) > 3*excerptRadius {
		lo, hi := max(0, offset-excerptRadius), min(len(s), offset+excerptRadius)
		for lo > 0 && !utf8.RuneStart(s[lo]) {
			lo--
		}
		for hi < len(s) && !utf8.RuneStart(s[hi]) {
			hi++
		}
		if lo > 0 {
			pre = "…"
		}
		if hi < len(s) {
			post = "…"
		}
		s = s[lo:hi]
	}
	if strconv.CanBackquote(s) {
		return pre + "`" + s + "`" + post
	}
	return pre + strconv.Quote(s) + post
}
