package filters

import "strings"

// Helpers for writing an Adaptor as one switch on the first part of the
// path, each case handing the rest of the path to a helper:
//
//	func adaptContainer(c *Container) filters.Adaptor {
//		return filters.AdapterFunc(func(fieldpath []string) (string, bool) {
//			switch fieldpath[0] {
//			case "id":
//				return filters.Value(c.ID, fieldpath[1:])
//			case "image":
//				return filters.Value(c.Image, fieldpath[1:])
//			case "labels":
//				return filters.Labels(c.Labels, fieldpath[1:])
//			}
//			return "", false
//		})
//	}
//
// A parsed filter never passes an empty fieldpath, so fieldpath[0] is safe
// inside an Adaptor that only filters call.

// Value adapts a scalar field: it is present, with value v, when the path
// ends at it (rest is empty), even when v is empty. A path that goes on
// below a scalar (image.x) names nothing.
func Value(v string, rest []string) (string, bool) {
	if len(rest) != 0 {
		return "", false
	}
	return v, true
}

// Labels adapts a map of strings such as labels or annotations. The key is
// the rest of the path joined with ".", so labels.io.berth.role and
// labels."io.berth.role" name the same label. The map itself, with no key,
// is no value.
func Labels(m map[string]string, rest []string) (string, bool) {
	if len(rest) == 0 {
		return "", false
	}
	key := rest[0]
	if len(rest) > 1 {
		key = strings.Join(rest, ".")
	}
	v, ok := m[key]
	return v, ok
}
