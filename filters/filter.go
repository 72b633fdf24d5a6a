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
package filters

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
