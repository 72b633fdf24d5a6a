// Package identifiers validates the names berth accepts from callers:
// namespaces, container ids, exec ids, snapshot keys, lease ids. They end up
// in paths and in bbolt keys, so the rules are strict: 1 to 76 characters of
// [A-Za-z0-9], with single '.', '_' or '-' between alphanumeric runs. No
// path separator, no "..", no leading or trailing punctuation, no NUL.
package identifiers

import (
	"fmt"

	"github.com/berthrt/berth/errdefs"
)

// MaxLength is the longest identifier accepted.
const MaxLength = 76

// Validate returns an error wrapping errdefs.ErrInvalidArgument when s is
// not a valid identifier; the message says what is wrong.
func Validate(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("identifier must not be empty: %w", errdefs.ErrInvalidArgument)
	case len(s) > MaxLength:
		return fmt.Errorf("identifier %.20q…: %d characters is longer than %d: %w", s, len(s), MaxLength, errdefs.ErrInvalidArgument)
	case !valid(s):
		return fmt.Errorf("identifier %q: must be alphanumeric runs joined by single '.', '_' or '-': %w", s, errdefs.ErrInvalidArgument)
	}
	return nil
}

// valid reports whether s matches ^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$.
// Written out rather than a package-level regexp: every berth process
// imports this package, and compiling the regexp at init cost each of them
// (berthctl, both berth-shim processes of a container) up to a millisecond
// on a loaded machine before main.
func valid(s string) bool {
	alnum := false // the previous byte was alphanumeric
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			alnum = true
		case c == '.' || c == '_' || c == '-':
			if !alnum {
				return false
			}
			alnum = false
		default:
			return false
		}
	}
	return alnum
}
