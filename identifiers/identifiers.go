// Package identifiers validates the names berth accepts from callers:
// namespaces, container ids, exec ids, snapshot keys, lease ids. They end up
// in paths and in bbolt keys, so the rules are strict: 1 to 76 characters of
// [A-Za-z0-9], with single '.', '_' or '-' between alphanumeric runs. No
// path separator, no "..", no leading or trailing punctuation, no NUL.
package identifiers

import (
	"fmt"
	"regexp"

	"github.com/berthrt/berth/errdefs"
)

// MaxLength is the longest identifier accepted.
const MaxLength = 76

var valid = regexp.MustCompile(`^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$`)

// Validate returns an error wrapping errdefs.ErrInvalidArgument when s is
// not a valid identifier; the message says what is wrong.
func Validate(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("identifier must not be empty: %w", errdefs.ErrInvalidArgument)
	case len(s) > MaxLength:
		return fmt.Errorf("identifier %.20q…: %d characters is longer than %d: %w", s, len(s), MaxLength, errdefs.ErrInvalidArgument)
	case !valid.MatchString(s):
		return fmt.Errorf("identifier %q: must be alphanumeric runs joined by single '.', '_' or '-': %w", s, errdefs.ErrInvalidArgument)
	}
	return nil
}
