package events

import (
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/berthrt/berth/filters"
)

// Envelope is one event with what the exchange knows of it. The exchange
// hands the same Envelope to every subscriber it matches: read it, never
// modify it.
type Envelope struct {
	Timestamp time.Time
	Namespace string
	Topic     string
	Event     *anypb.Any
}

// Field makes an Envelope a filters.Adaptor. Its fields:
//
//	topic, namespace    always present
//	event.<field>       a field of the payload, when its type is linked into
//	                    this program (registered in protoregistry)
//
// A payload field is named by its proto name (container_id) or its JSON
// name (containerId); message fields nest (event.exited_at.seconds), and a
// map<string, …> takes the rest of the path as its key, as labels do
// (event.labels.io.berth.role). A scalar field without explicit presence is
// present even at its zero value, so event.exit_status==0 matches a clean
// exit; one with explicit presence (optional, oneof) is present when set.
// Bytes, repeated fields and payloads of unknown types are absent.
//
// Field decodes the payload on every event.* lookup; the exchange itself
// decodes each payload at most once per delivery.
func (e *Envelope) Field(fieldpath []string) (string, bool) {
	return (&envelopeAdaptor{env: e}).Field(fieldpath)
}

// envelopeAdaptor adapts one envelope for all the filters of one delivery,
// decoding its payload at most once. It is used by one goroutine at a time.
type envelopeAdaptor struct {
	env     *Envelope
	decoded bool                 // payload decoded (or found undecodable)
	payload protoreflect.Message // nil when the payload cannot be decoded
}

func (a *envelopeAdaptor) Field(fieldpath []string) (string, bool) {
	if len(fieldpath) == 0 {
		return "", false
	}
	switch fieldpath[0] {
	case "topic":
		return filters.Value(a.env.Topic, fieldpath[1:])
	case "namespace":
		return filters.Value(a.env.Namespace, fieldpath[1:])
	case "event":
		if len(fieldpath) < 2 {
			return "", false
		}
		if !a.decoded {
			a.decoded = true
			if a.env.Event != nil {
				if m, err := a.env.Event.UnmarshalNew(); err == nil {
					a.payload = m.ProtoReflect()
				}
			}
		}
		if a.payload == nil {
			return "", false
		}
		return messageField(a.payload, fieldpath[1:])
	}
	return "", false
}

// messageField returns the field of m that path names, formatted as a
// string; see Envelope.Field for the rules. path is not empty.
func messageField(m protoreflect.Message, path []string) (string, bool) {
	for {
		fields := m.Descriptor().Fields()
		fd := fields.ByName(protoreflect.Name(path[0]))
		if fd == nil {
			fd = fields.ByJSONName(path[0])
		}
		if fd == nil {
			return "", false
		}
		rest := path[1:]
		switch {
		case fd.IsMap():
			if len(rest) == 0 || fd.MapKey().Kind() != protoreflect.StringKind {
				return "", false
			}
			key := protoreflect.ValueOfString(strings.Join(rest, ".")).MapKey()
			v := m.Get(fd).Map().Get(key)
			if !v.IsValid() {
				return "", false
			}
			return scalar(fd.MapValue(), v)
		case fd.IsList():
			return "", false
		case fd.Message() != nil:
			if len(rest) == 0 || !m.Has(fd) {
				return "", false
			}
			m, path = m.Get(fd).Message(), rest
		default:
			if len(rest) != 0 || (fd.HasPresence() && !m.Has(fd)) {
				return "", false
			}
			return scalar(fd, m.Get(fd))
		}
	}
}

// scalar formats a singular value of a non-message kind; bytes and
// messages are absent.
func scalar(fd protoreflect.FieldDescriptor, v protoreflect.Value) (string, bool) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return v.String(), true
	case protoreflect.BoolKind:
		return strconv.FormatBool(v.Bool()), true
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return strconv.FormatInt(v.Int(), 10), true
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind,
		protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return strconv.FormatUint(v.Uint(), 10), true
	case protoreflect.FloatKind:
		return strconv.FormatFloat(v.Float(), 'g', -1, 32), true
	case protoreflect.DoubleKind:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64), true
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return string(ev.Name()), true
		}
		return strconv.FormatInt(int64(v.Enum()), 10), true
	}
	return "", false
}
