package snapshots

import (
	"fmt"
	"maps"
	"strings"
	"unicode/utf8"

	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/filters"
)

// MaxKeyLength bounds a key or a committed snapshot's name, in bytes. A
// chain ID ("sha256:" and 64 hex digits) takes 71; the namespaced view of
// package metadata adds a short prefix of its own below this bound.
const MaxKeyLength = 1024

// ValidateKey checks a key or name: not empty, at most MaxKeyLength bytes,
// valid UTF-8 (the API carries it as a protobuf string), no NUL. Nothing
// else is refused: keys never become paths.
func ValidateKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("snapshot key must not be empty: %w", errdefs.ErrInvalidArgument)
	case len(key) > MaxKeyLength:
		return fmt.Errorf("snapshot key %.32q…: %d bytes, more than %d: %w", key, len(key), MaxKeyLength, errdefs.ErrInvalidArgument)
	case !utf8.ValidString(key):
		return fmt.Errorf("snapshot key %q: not valid UTF-8: %w", key, errdefs.ErrInvalidArgument)
	case strings.IndexByte(key, 0) >= 0:
		return fmt.Errorf("snapshot key %q: contains NUL: %w", key, errdefs.ErrInvalidArgument)
	}
	return nil
}

// ValidateLabels checks labels with the bounds of content labels
// (content.MaxLabelSize, content.MaxLabels).
func ValidateLabels(labels map[string]string) error {
	return content.ValidateLabels(labels)
}

// cleanLabels returns labels without empty values, nil when none is left.
func cleanLabels(labels map[string]string) map[string]string {
	out := maps.Clone(labels)
	maps.DeleteFunc(out, func(_, v string) bool { return v == "" })
	if len(out) == 0 {
		return nil
	}
	return out
}

// UpdateLabels returns current changed as Update describes: field path
// "labels" replaces them all with update's, "labels.<key>" sets or (when
// update lacks it) removes one, no field path means "labels". The result
// is validated; nil when no label is left.
func UpdateLabels(current map[string]string, update Info, fieldpaths []string) (map[string]string, error) {
	if len(fieldpaths) == 0 {
		fieldpaths = []string{"labels"}
	}
	next := maps.Clone(current)
	for _, p := range fieldpaths {
		key, one := strings.CutPrefix(p, "labels.")
		switch {
		case p == "labels":
			next = maps.Clone(update.Labels)
		case one && key != "":
			if next == nil {
				next = map[string]string{}
			}
			next[key] = update.Labels[key]
		default:
			return nil, fmt.Errorf("snapshot %q: field path %q: only labels and labels.<key> can change: %w",
				update.Name, p, errdefs.ErrInvalidArgument)
		}
	}
	next = cleanLabels(next)
	if err := ValidateLabels(next); err != nil {
		return nil, fmt.Errorf("snapshot %q: %w", update.Name, err)
	}
	return next, nil
}

// ParseFilters parses Walk's filters; ErrInvalidArgument when one does not
// parse.
func ParseFilters(fs []string) (filters.Filter, error) {
	f, err := filters.ParseAll(fs...)
	if err != nil && !errdefs.IsInvalidArgument(err) {
		err = fmt.Errorf("snapshot filters: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	return f, err
}

// InfoAdaptor exposes info to filters: kind, name, parent, labels.<key>.
func InfoAdaptor(info Info) filters.Adaptor {
	return filters.AdapterFunc(func(fieldpath []string) (string, bool) {
		switch fieldpath[0] {
		case "kind":
			return filters.Value(info.Kind.String(), fieldpath[1:])
		case "name":
			return filters.Value(info.Name, fieldpath[1:])
		case "parent":
			return filters.Value(info.Parent, fieldpath[1:])
		case "labels":
			return filters.Labels(info.Labels, fieldpath[1:])
		}
		return "", false
	})
}
